"""An HTML template for ``dvc plots show`` that draws without network access.

DVC's default page loads Vega, Vega-Lite and Vega-Embed from a CDN, so it stays blank offline. This page
inlines the same libraries, taken from the ``vl-convert-python`` wheel (a registry package, installed with
the locked environment), and leaves out DVC's ``{scripts}`` placeholder so no CDN tag is ever added.
``.dvc/config`` points ``plots.html_template`` at the file; the evaluate stage writes it when it is missing
or was written by another version of the libraries (bundling takes 2-8 s here, so the result is cached).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from importlib import metadata
from pathlib import Path

PAGE_NAME = "offline.html"  # in plots/; `.dvc/config` names it as plots.html_template
_STAMP = "<!-- mlops-recipes offline plots page: vl-convert-python {package}, vega-lite {vega_lite} -->"

# What DVC's plot divs call: the three libraries as globals (vl-convert's default snippet does the same).
_GLOBALS_SNIPPET = "window.vegaEmbed = vegaEmbed; window.vega = vega; window.vegaLite = vegaLite;"

_PAGE = """<!DOCTYPE html>
{stamp}
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC plots (offline)</title>
    <script>
(function () {{
{bundle}
}})();
    </script>
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
        img {{ max-width: 100%; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def _vega_lite_version() -> str:
    import vl_convert as vlc

    # DVC's built-in templates are Vega-Lite 5 specifications: bundle the newest 5.x the wheel ships.
    fives = [v for v in vlc.get_vegalite_versions() if v.startswith("5.")]
    return max(fives, key=lambda v: tuple(int(p) for p in v.split(".")))


def stamp() -> str:
    """Second line of a page (after the doctype) written by this version of the libraries."""
    return _STAMP.format(package=metadata.version("vl-convert-python"), vega_lite=_vega_lite_version())


def render() -> str:
    """The whole template: the bundled libraries inline, DVC's ``{plot_divs}`` placeholder in the body."""
    import vl_convert as vlc

    version = _vega_lite_version()
    bundle = vlc.javascript_bundle(_GLOBALS_SNIPPET, vl_version=version)
    if "</script" in bundle.lower():  # would end the inline script early
        bundle = bundle.replace("</script", "<\\/script")
    # Wrapped in a function: the bundle's top-level names stay out of the page's global scope, where DVC's
    # own inline scripts declare theirs (``var spec``); the bundle publishes vegaEmbed/vega/vegaLite itself.
    return _PAGE.format(stamp=stamp(), bundle=bundle)


def _is_current(path: Path, expected: str) -> bool:
    if not path.is_file():
        return False
    with path.open(encoding="utf-8") as handle:
        handle.readline()
        return handle.readline().rstrip("\n") == expected


def _user_cache(expected: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mlops-recipes" / f"plots-page-{hashlib.sha256(expected.encode()).hexdigest()[:16]}.html"


def _write(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(content, encoding="utf-8")
    partial.replace(path)


def ensure(path: Path) -> bool:
    """Write the template at ``path`` unless it is already current. Returns whether it was written.

    Bundling takes seconds, so the page is also kept in the user's cache directory (``$XDG_CACHE_HOME`` or
    ``~/.cache``) and copied from there into other checkouts; an unwritable cache is skipped.
    """
    expected = stamp()
    if _is_current(path, expected):
        return False
    content = None
    try:
        cached: Path | None = _user_cache(expected)
    except RuntimeError:  # no home directory to find a cache in
        cached = None
    if cached is not None and _is_current(cached, expected):
        content = cached.read_text(encoding="utf-8")
    if content is None:
        content = render()
        if cached is not None:
            with contextlib.suppress(OSError):
                _write(cached, content)
    _write(path, content)
    return True
