"""This repository as a Copier template (issue 18): `copier copy` renders it renamed, `copier update` brings changes.

Real Copier on a clean clone of HEAD, as a user's `copier copy <git url>` sees it. One project rendered with
non-default answers is shared by the tests: it is the repository with the answers' names (nothing else changed, no
template name left), its compose file is valid, `make run` and its unit tests pass. The default answers reproduce
the repository; an update from an older tag keeps the project's edits and leaves a conflicting line as Copier does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_recipes import template as rename

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
COPIER = Path(sys.executable).parent / "copier"
ANSWERS_FILE = ".copier-answers.yml"
ANSWERS_TEMPLATE = "{{ _copier_conf.answers_file }}.jinja"
# Not the defaults, and chosen so that a leftover is unambiguous: no answer holds a word of a template name. The
# distribution and package names are left to their defaults, derived from the project name.
ANSWERS = {
    "project_name": "Acme Risk",
    "model_name": "acme-scorer",
    "feature_service": "acme_features_v2",
    "feast_project": "acme_feast",
    "experiment_name": "acme-risk-exp",
    "description": "Card risk scoring for Acme.",
    "author": "Jane Doe",
    "licence": "MIT",
}
DERIVED = {"distribution_name": "acme-risk", "package_name": "acme_risk"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=_git_env(), capture_output=True, text=True, check=True).stdout


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "tests"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "tests@example.invalid"
    return env


def _copier(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(COPIER), *args, "--trust", "--defaults", "--quiet"],
        cwd=cwd,
        env=_git_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"copier {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def render(template: Path, destination: Path, answers: dict[str, str], vcs_ref: str = "HEAD") -> Path:
    """`copier copy` as the README says, with ``answers`` given as data (the rest: defaults)."""
    data = [arg for key, value in answers.items() for arg in ("--data", f"{key}={value}")]
    _copier(template, "copy", "--vcs-ref", vcs_ref, *data, str(template), str(destination))
    return destination


def tracked(root: Path) -> list[str]:
    """The files of a git work tree: committed, and new ones not ignored."""
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    return sorted(name for name in set(listed) if name and (root / name).is_file())


def template_names(template: Path) -> dict[str, str]:
    config = yaml.safe_load((template / "copier.yml").read_text(encoding="utf-8"))
    return config["template_names"]["default"]  # type: ignore[no-any-return]


def leftovers(root: Path, files: Iterable[str], names: Iterable[str]) -> list[str]:
    """Any spelling of a template name in the files' paths or contents."""
    patterns = [rename.variant_pattern(name) for name in names]
    found = []
    for name in files:
        text = (root / name).read_bytes().decode("utf-8", errors="replace")
        found += [f"{name}: {match.group(0)!r}" for p in patterns for match in p.finditer(f"{name}\n{text}")]
    return found


def expected_render(template: Path, mapping: dict[str, str]) -> dict[str, bytes]:
    """What a render must be: every file of the template, renamed (path and UTF-8 text), nothing else rendered."""
    expected = {}
    for name in tracked(template):
        if name == ANSWERS_TEMPLATE:
            continue
        data = (template / name).read_bytes()
        with contextlib.suppress(UnicodeDecodeError):
            data = rename.rename_text(data.decode("utf-8"), mapping).encode("utf-8")
        expected[rename.rename_text(name, mapping)] = data
    return expected


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean clone of HEAD: the template as `copier copy <git url>` sees it (no work-tree edits, no .venv)."""
    clone = tmp_path_factory.mktemp("copier") / "template"
    _git(REPO_ROOT, "clone", "-q", "--no-hardlinks", str(REPO_ROOT), str(clone))
    return clone


@pytest.fixture(scope="module")
def rendered(template: Path, project_at: Callable[[Path], Any]) -> Any:
    """The project rendered with ANSWERS, committed as a user would (DVC wants a git repository)."""
    project = project_at(render(template, template.parent / "acme-risk", ANSWERS))
    project.run("git", "init", "-q", "-b", "main")
    project.commit("copier copy")
    return project


def _uv() -> str:
    """The uv this suite runs with (the same cache, so the install is a local copy)."""
    found = os.environ.get("UV") or shutil.which("uv") or str(REPO_ROOT / ".tools" / "bin" / "uv")
    assert Path(found).exists() or shutil.which(found), f"uv not found ({found}): set UV to its path"
    return found


def _own_env(project: Any) -> dict[str, str]:
    """The project's tools in its own environment (not this suite's), uv's Python downloads off."""
    env = {k: v for k, v in project.env.items() if k != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    return env


@pytest.fixture(scope="module")
def installed(rendered: Any) -> Any:
    """The rendered project with its locked environment (`make install`, the first step of `make run`)."""
    rendered.run("make", "install", f"UV={_uv()}")
    return rendered


@dataclass
class Background:
    """A command running in the background, its output going to ``log``."""

    process: subprocess.Popen[str]
    log: Path


@pytest.fixture(scope="module")
def make_run(installed: Any) -> Iterator[Background]:
    """`make run` (tiny params) started in the background: the unit tests run meanwhile, on the other core."""
    installed.shrink_params()
    log = installed.root.parent / "make-run.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["make", "run", f"UV={_uv()}"],
            cwd=installed.root,
            env=_own_env(installed),
            stdout=out,
            stderr=out,
            text=True,
        )
    yield Background(process, log)
    if process.poll() is None:
        process.kill()
        process.wait()


def test_the_render_is_the_repository_with_the_answers_names(template: Path, rendered: Any) -> None:
    answers = yaml.safe_load((rendered.root / ANSWERS_FILE).read_text(encoding="utf-8"))
    assert {k: answers[k] for k in [*ANSWERS, *DERIVED]} == {**ANSWERS, **DERIVED}
    mapping = rename.renames(template_names(template), answers)

    expected = expected_render(template, mapping)
    files = [name for name in tracked(rendered.root) if name != ANSWERS_FILE]

    assert sorted(expected) == files
    assert [name for name in files if (rendered.root / name).read_bytes() != expected[name]] == []
    # What Copier must not render survived verbatim: GitHub Actions, Grafana legends, Prometheus alert templates.
    for name in (".github/workflows/ci.yml", "monitoring/grafana/dashboards/fraud-serving.json"):
        assert "{{" in (rendered.root / name).read_text(encoding="utf-8"), name
    assert "{{ $labels." in (rendered.root / "monitoring/prometheus/rules/serving.yml").read_text(encoding="utf-8")


def test_no_template_name_remains(template: Path, rendered: Any) -> None:
    files = tracked(rendered.root)

    assert leftovers(rendered.root, files, template_names(template).values()) == []
    assert (rendered.root / "src/acme_risk/cli.py").is_file()
    assert 'name = "acme-risk"' in (rendered.root / "pyproject.toml").read_text(encoding="utf-8")
    assert "project: acme_feast" in (rendered.root / "feature_repo/feature_store.yaml").read_text(encoding="utf-8")


def test_compose_config_is_valid_with_the_example_env(rendered: Any, tool_compose: str) -> None:
    # `make compose-env`'s script: the example's empty secrets filled, as a user's first step.
    rendered.run(sys.executable, "docker/compose-env.py", "--example", ".env.example", "--output", ".env")

    config = yaml.safe_load(rendered.run(tool_compose, "config").stdout)

    images = {service.get("image", "") for service in config["services"].values()}
    assert {"acme-risk-app:local", "acme-risk-mlflow:local"} <= images


def test_the_rendered_unit_tests_pass(installed: Any, make_run: Background) -> None:
    result = subprocess.run(
        [_uv(), "run", "--locked", "--no-sync", "pytest", "-m", "unit", "-q", "-p", "no:cacheprovider", "tests/unit"],
        cwd=installed.root,
        env=_own_env(installed),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


def test_make_run_passes_with_the_answers_names(make_run: Background) -> None:
    code = make_run.process.wait(timeout=600)

    output = make_run.log.read_text()
    assert code == 0, f"make run exited {code}\n{output[-6000:]}"
    assert "model: acme-scorer" in output
    assert "features acme_features_v2" in output


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("package_name=serving", "clashes with a folder of the project"),
        ("feast_project=acme_risk", "Choose a Feast project distinct from the package"),
        ("model_name=Acme Scorer", "Lower-case letters and digits"),
    ],
)
def test_a_bad_answer_is_refused_with_its_reason_and_nothing_is_written(
    template: Path, tmp_path: Path, answer: str, message: str
) -> None:
    destination = tmp_path / "refused"

    result = _copier(
        template,
        "copy",
        "--data",
        "project_name=Acme Risk",
        "--data",
        answer,
        str(template),
        str(destination),
        check=False,
    )

    assert result.returncode != 0
    assert message in result.stderr
    assert not destination.exists()


def test_the_default_answers_reproduce_the_repository(template: Path) -> None:
    default = render(template, template.parent / "default", {})

    files = [name for name in tracked_files(default) if name != ANSWERS_FILE]

    assert files == sorted(name for name in tracked(template) if name != ANSWERS_TEMPLATE)
    assert [name for name in files if (default / name).read_bytes() != (template / name).read_bytes()] == []


def tracked_files(root: Path) -> list[str]:
    """Every file under ``root`` (a render is no git repository yet)."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def test_update_keeps_local_edits_and_brings_template_changes(template: Path, tmp_path: Path) -> None:
    # The template: v1.0.0 is HEAD; then a release adds a file and changes two others.
    source = tmp_path / "template"
    _git(tmp_path, "clone", "-q", "--no-hardlinks", str(template), str(source))
    _git(source, "tag", "v1.0.0")
    (source / "docs/news.md").write_text("Import `mlops_recipes.template`; model `fraud-detector`.\n")
    init = source / "src/mlops_recipes/__init__.py"
    init.write_text(init.read_text() + "# New in the template: mlops_recipes 1.1.\n")
    makefile = source / "Makefile"
    lines = makefile.read_text().splitlines(keepends=True)
    makefile.write_text("# mlops-recipes task runner, from the template's new release.\n" + "".join(lines[1:]))
    _git(source, "add", "-A")
    _git(source, "commit", "-q", "-m", "template change")
    # The project: rendered from v1.0.0, committed, then edited (README: elsewhere; Makefile: the same line).
    project = render(source, tmp_path / "project", ANSWERS, vcs_ref="v1.0.0")
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "copier copy")
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\n## Our notes\n\nKept across updates.\n")
    lines = (project / "Makefile").read_text().splitlines(keepends=True)
    (project / "Makefile").write_text("# Acme's task runner, our wording.\n" + "".join(lines[1:]))
    _git(project, "commit", "-q", "-am", "our edits")

    _copier(project, "update", "--vcs-ref", "HEAD")

    assert readme.read_text().endswith("## Our notes\n\nKept across updates.\n")
    assert (project / "docs/news.md").read_text() == "Import `acme_risk.template`; model `acme-scorer`.\n"
    assert (project / "src/acme_risk/__init__.py").read_text().endswith("# New in the template: acme_risk 1.1.\n")
    assert not (project / "src/mlops_recipes").exists()
    # Both edits of Makefile's first line, between Copier's markers, for the user to resolve.
    head = (project / "Makefile").read_text().split("\n", 5)
    assert head[:5] == [
        "<<<<<<< before updating",
        "# Acme's task runner, our wording.",
        "=======",
        "# acme-risk task runner, from the template's new release.",
        ">>>>>>> after updating",
    ]
    answers = yaml.safe_load((project / ANSWERS_FILE).read_text())
    assert answers["_commit"] != "v1.0.0"
    assert answers["package_name"] == "acme_risk"
    assert leftovers(project, tracked(project), template_names(source).values()) == []
