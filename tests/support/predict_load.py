"""Concurrent ``/predict`` clients for the tests that change models under load (hot swap, rollouts).

Each client is a thread with its own keep-alive connection, posting the bodies ``body(client, n)`` one at a time
until stopped, and recording every outcome: ``seen[client]`` holds (status, model_version or the error), in
request order. A connection error is recorded as status -1, so a test can assert that nothing failed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

Body = Callable[[int, int], dict[str, Any]]  # (client index, request number) -> the JSON body


class PredictLoad:
    """``clients`` threads posting ``/predict`` back to back until :meth:`finish` (or ``max_requests`` each)."""

    def __init__(self, url: str, body: Body, *, clients: int, max_requests: int | None = None) -> None:
        self.stop = threading.Event()
        self.seen: list[list[tuple[int, str]]] = [[] for _ in range(clients)]
        self._pool = ThreadPoolExecutor(clients)
        self._futures = [self._pool.submit(self._client, url, body, i, max_requests) for i in range(clients)]

    def _client(self, url: str, body: Body, index: int, max_requests: int | None) -> None:
        seen = self.seen[index]
        with httpx.Client(base_url=url, timeout=10) as http:
            n = 0
            while not self.stop.is_set() and (max_requests is None or n < max_requests):
                try:
                    response = http.post("/predict", json=body(index, n))
                except httpx.HTTPError as error:
                    seen.append((-1, repr(error)))
                    continue
                finally:
                    n += 1
                ok = response.status_code == 200
                seen.append((response.status_code, response.json()["model_version"] if ok else response.text))

    def saw(self, version: str, times: int, clients: range | None = None) -> bool:
        """Whether each client (of ``clients``, default all) got ``version`` in at least ``times`` responses."""
        chosen = clients if clients is not None else range(len(self.seen))
        return all(sum(v == version for _, v in list(self.seen[i])) >= times for i in chosen)

    def finish(self) -> list[list[tuple[int, str]]]:
        """Stop every client, wait for its last request, and return what each one saw."""
        self.stop.set()
        for future in self._futures:
            future.result(timeout=60)
        self._pool.shutdown()
        return self.seen
