#!/usr/bin/env python3
"""Container healthcheck: exit 0 if every URL answers 2xx within the timeout, else 1 (stdlib only, ~50 ms).

Usage: probe [--auth-file FILE] URL [URL...]   (PROBE_TIMEOUT seconds, default 4)

``--auth-file`` sends HTTP basic credentials read from FILE (``user:password`` on one line): they stay off the
command line. A missing file is a failure (the container writes it once its accounts exist).
"""

import base64
import os
import sys
import urllib.request
from pathlib import Path


def main(args: list[str]) -> int:
    """Probe each URL in turn; the first failure decides."""
    timeout = float(os.environ.get("PROBE_TIMEOUT", "4"))
    headers = {}
    if args[:1] == ["--auth-file"] and len(args) >= 2:
        try:
            credentials = Path(args[1]).read_text().strip()
        except OSError as error:
            print(f"no credentials: {error}", file=sys.stderr)  # noqa: T201
            return 1
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        args = args[2:]
    urls = args
    for url in urls:
        try:
            request = urllib.request.Request(url, headers=headers)  # noqa: S310 - our own fixed URLs
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own fixed URLs
                if not 200 <= response.status < 300:
                    print(f"{url}: HTTP {response.status}", file=sys.stderr)  # noqa: T201
                    return 1
        except OSError as error:
            print(f"{url}: {error}", file=sys.stderr)  # noqa: T201
            return 1
    return 0 if urls else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
