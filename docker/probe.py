#!/usr/bin/env python3
"""Container healthcheck: exit 0 if every URL answers 2xx within the timeout, else 1 (stdlib only, ~50 ms).

Usage: probe URL [URL...]   (PROBE_TIMEOUT seconds, default 4)
"""

import os
import sys
import urllib.request


def main(urls: list[str]) -> int:
    """Probe each URL in turn; the first failure decides."""
    timeout = float(os.environ.get("PROBE_TIMEOUT", "4"))
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own fixed URLs
                if not 200 <= response.status < 300:
                    print(f"{url}: HTTP {response.status}", file=sys.stderr)  # noqa: T201
                    return 1
        except OSError as error:
            print(f"{url}: {error}", file=sys.stderr)  # noqa: T201
            return 1
    return 0 if urls else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
