"""Serving benchmarks: our `/predict` next to `mlflow models serve`, model and lookup cost, tail, workers, start-up.

Runs on a fresh `git clone` of the current commit (HEAD; `--worktree` adds the uncommitted changes to tracked
files) in a temporary folder, with the project's own locked environment: `dvc repro` with the default params
leaves a champion (version 1) in the clone's SQLite MLflow store and a materialized Feast SQLite online store.
Then every figure is measured next to its baseline in the same run, on this machine:

1. `/predict` by entity ids (online lookup included), 1 worker, 8 keep-alive clients, next to
   `mlflow models serve` scoring the same row with every feature inline (`dataframe_split`);
2. in-process medians: the service's model call vs the raw `predict_proba` (and the pyfunc model on a
   DataFrame), the service's online lookup vs a direct sqlite3 read of the same rows;
3. p99 at 8 clients vs p50 at 1 client;
4. 2 workers vs 1 worker; 5. metrics on vs off;
6. start-up: process start to the first successful scoring call, ours vs `mlflow models serve`.

Two servers compared over HTTP are loaded in turns (A B B A A B B A, 2 s each) so that drift on a shared
machine hits both alike; the server CPU per request and the CPU other processes used meanwhile are reported
too, as busy neighbours move throughput a lot on 2 cores. HTTP load goes to 127.0.0.1 only, from `wrk`
(Debian: `apt-get install wrk`) with a Lua script for the POST bodies or, when wrk is missing, from a Python
asyncio generator (then the client may be the bottleneck); the load generator is pinned to the last core.
Note: `mlops_recipes` is imported from the project's editable install (the working tree); `serving/` and the
data come from the clone.

    uv run python bench/serving.py [--duration 10] [--json PATH] [--worktree] [--project TRAINED_CLONE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import http.client
import itertools
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the shared helpers of the tests and the benchmarks (tests/support)
from support.project import clone_head, project_env  # noqa: E402
from support.servers import free_port  # noqa: E402

# The in-process figures: real code run in a child process of the benchmarked project (see its docstring).
INPROCESS = Path(__file__).with_name("serving_inprocess.py")
MODEL_NAME = "fraud-detector"
ALIAS = "champion"
# The scored transaction: a customer and a merchant that have every feature online, and request fields.
TRANSACTION = {"customer_id": 1, "merchant_id": 1, "amount": 25.0, "channel": "online"}
CONNECTIONS = 8
STARTUP_TIMEOUT_S = 180.0
TARGETS = {
    "throughput_vs_mlflow": 5.0,  # ours / mlflow, at least
    "model_call_vs_raw": 1.5,  # at most
    "lookup_vs_sqlite": 10.0,  # at most
    "p99_8_vs_p50_1": 25.0,  # at most
    "two_vs_one_worker": 1.4,  # at least
    "metrics_cost_pct": 3.0,  # at most
    "startup_max_s": 15.0,  # at most (and no slower than mlflow)
    "update_throughput_drop_pct": 15.0,  # at most: the per-transaction customer update
    "update_p99_ratio": 1.2,  # at most
}

# Each load run reports its latency percentiles from TAIL_FROM up in steps of TAIL_STEP: enough of its distribution
# for the p99 of several runs' requests together (merged_percentile), which one run's p99 alone cannot give.
TAIL_FROM, TAIL_STEP = 90.0, 0.05
TAIL_LEVELS = tuple(round(TAIL_FROM + i * TAIL_STEP, 2) for i in range(int((99.95 - TAIL_FROM) / TAIL_STEP) + 1))
_WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{body_lines}

done = function(summary, latency, requests)
  local e = summary.errors
  local tail = {{}}
  for i = 0, {tail_steps} do tail[#tail + 1] = latency:percentile({tail_from} + i * {tail_step}) end
  io.write('\\nWRK_TAIL ' .. table.concat(tail, ' ') .. '\\n')
  io.write(string.format(
    '\\nWRK_JSON {{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, '
    .. '"mean_us": %.1f, "status_errors": %d, "socket_errors": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def wrk_script(bodies: tuple[bytes, ...]) -> str:
    """The wrk Lua script: one fixed body, or the bodies in turn (one request each, round robin)."""
    if len(bodies) == 1:
        body_lines = f"wrk.body = [==[{bodies[0].decode()}]==]"
    else:
        table = ",\n".join(f"  [==[{body.decode()}]==]" for body in bodies)
        body_lines = (
            f"local bodies = {{\n{table}\n}}\nlocal turn = 0\n"
            "request = function()\n  turn = turn % #bodies + 1\n"
            "  return wrk.format(nil, nil, nil, bodies[turn])\nend"
        )
    return _WRK_SCRIPT.format(
        body_lines=body_lines, tail_from=TAIL_FROM, tail_step=TAIL_STEP, tail_steps=len(TAIL_LEVELS) - 1
    )


# ----------------------------------------------------------------------------------------------- project
def bench_env(root: Path) -> dict[str, str]:
    """The project's environment without any inherited serving setting (each server below sets its own)."""
    return project_env(root, drop=("SERVING_",))


def prepare(target: Path, *, worktree: bool) -> float:
    """Clone HEAD (plus uncommitted tracked changes with ``worktree``) and train it; seconds of `dvc repro`."""
    clone_head(target, worktree=worktree)
    started = time.perf_counter()
    result = subprocess.run(["dvc", "repro"], cwd=target, env=bench_env(target), capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"dvc repro failed in {target}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def in_project(root: Path, command: str, arguments: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run a command of ``bench/serving_inprocess.py`` with the project's ``serving`` (see that module)."""
    result = subprocess.run(
        # -P: not this file's folder first on the path, where bench/serving.py would shadow the package.
        [sys.executable, "-P", str(INPROCESS), command, json.dumps(arguments)],
        cwd=root,
        env={**env, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{command} benchmark failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def run_updates(root: Path, iterations: int) -> dict[str, Any]:
    """The scoring call with and without the customer update, in a child process of the project."""
    arguments = {"alias": ALIAS, "iterations": iterations}
    # As the launcher runs the service: OpenMP spin-waits per calling thread would otherwise dominate.
    return in_project(root, "updates", arguments, {**bench_env(root), "OMP_NUM_THREADS": "1"})


def updates_report(figures: dict[str, Any], http: dict[str, Any]) -> str:
    """The update's cost per request (in-process) and the service's throughput drop and p99 ratio (HTTP)."""
    on, off = figures["with_update"], figures["without_update"]
    cost = on["mean_us"] - off["mean_us"]
    share = cost / on["mean_us"] * 100
    served_on, served_off = http["update_on_c8"], http["update_off_c8"]
    drop = (1 - rps(served_on) / rps(served_off)) * 100
    p99 = served_on["p99_ms"] / served_off["p99_ms"]
    t = TARGETS
    return "\n".join(
        [
            "| measurement | with the update | without (same run) | target | verdict |",
            "|---|---|---|---|---|",
            f"| `/predict` over HTTP, 1 worker, {CONNECTIONS} clients, each request a new transaction of the next of "
            f"{http['customers']:,} customers (turns A B B A) | {rps(served_on):,.0f} req/s (turns: "
            f"{turns(served_on)}; server CPU {served_on['extra']['cpu_us_per_request']:,.0f} µs/req) | "
            f"{rps(served_off):,.0f} req/s (turns: {turns(served_off)}; server CPU "
            f"{served_off['extra']['cpu_us_per_request']:,.0f} µs/req) | "
            f"drop ≤ {t['update_throughput_drop_pct']:.0f} % | "
            f"{drop:.1f} % {verdict(drop <= t['update_throughput_drop_pct'])} |",
            f"| p99 of `/predict` (all turns' requests; worst turn) | {served_on['p99_ms']:.1f} ms "
            f"({served_on['extra']['worst_turn_p99_ms']:.1f} ms) | {served_off['p99_ms']:.1f} ms "
            f"({served_off['extra']['worst_turn_p99_ms']:.1f} ms) | "
            f"≤ {t['update_p99_ratio']}x | {p99:.2f}x {verdict(p99 <= t['update_p99_ratio'])} |",
            f"| the update's cost: in-process scoring call, 1 transaction (lookup + model [+ update]), mean / median "
            f"| {on['mean_us']:,.0f} / {on['median_us']:,.0f} µs | {off['mean_us']:,.0f} / {off['median_us']:,.0f} "
            f"µs | | {cost:,.0f} µs per request ({share:.0f} % of the call without HTTP) |",
        ]
    )


def run_micro(root: Path, transaction: dict[str, Any], iterations: int) -> dict[str, Any]:
    """The in-process micro-benchmarks, in a child process of the project (``serving_inprocess.micro``)."""
    arguments = {"transaction": transaction, "alias": ALIAS, "iterations": iterations}
    return in_project(root, "micro", arguments, bench_env(root))


# ----------------------------------------------------------------------------------------------- servers
def post(port: int, path: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes] | None:
    """One POST on a fresh connection to 127.0.0.1: (status, body), or None if nothing answers yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


@dataclass
class Server:
    """A server process we started (in its own process group) and the call that scores on it."""

    name: str
    port: int
    path: str
    body: bytes
    process: subprocess.Popen[bytes]
    log: Path
    # Sent in turn by the load runs when given (one request each); ``body`` alone otherwise.
    bodies: tuple[bytes, ...] = ()
    startup_s: float = math.nan
    first_response: bytes = b""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def cpu_seconds(self) -> dict[int, float]:
        """CPU time (user + system) used so far by each live process of the server (its process group)."""
        ticks = os.sysconf("SC_CLK_TCK")
        used = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == self.process.pid:  # pgrp: we started it as a session (and group) leader
                used[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return used

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start(
    name: str, command: list[str], *, cwd: Path, env: dict[str, str], port: int, path: str, body: bytes, logs: Path
) -> Server:
    """Start ``command`` and time it until the scoring call first answers 200."""
    log = logs / f"{name}.log"
    with log.open("wb") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, port, path, body, process, log)
    while True:
        answer = post(port, path, body)
        if answer is not None and answer[0] == 200:
            server.startup_s = time.perf_counter() - started
            server.first_response = answer[1]
            return server
        if process.poll() is not None or time.perf_counter() - started > STARTUP_TIMEOUT_S:
            server.stop()
            detail = f"answered {answer[0]}: {answer[1][:500]!r}" if answer else "no answer"
            raise SystemExit(
                f"{name} did not score within {STARTUP_TIMEOUT_S:.0f} s ({detail}); log:\n"
                f"{log.read_text(errors='replace')[-4000:]}"
            )
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------------- load
def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, from /proc/stat)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds of this process' waited-for children (the load generator runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LoadResult:
    """One load run: completed requests over the run's duration, latency percentiles in ms."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


class LoadGenerator:
    """Keep-alive POST load on 127.0.0.1 from wrk, or from the Python fallback; pinned to the last core."""

    def __init__(self, tool: str, workdir: Path) -> None:
        self.workdir = workdir
        self.cpu = (os.cpu_count() or 1) - 1
        wrk = shutil.which("wrk")
        if tool == "wrk" and wrk is None:
            raise SystemExit("wrk is not installed: apt-get install -y wrk (Debian), or use --load-tool python")
        if tool != "python" and wrk is not None:
            self.tool = "wrk"
            version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
            self.note = f"{(version.stdout or version.stderr).split(' Copyright')[0].strip()}, 1 thread"
        else:
            self.tool = "python"
            missing = " (wrk not found: apt-get install -y wrk)" if wrk is None else ""
            self.note = f"Python asyncio generator{missing}; the client may be the bottleneck"
            print(f"load generator: {self.note}", file=sys.stderr)
        self.pin = ["taskset", "-c", str(self.cpu)] if self.cpu > 0 and shutil.which("taskset") else []
        if self.cpu > 0:
            self.note += f", pinned to CPU {self.cpu}"
        self._scripts: dict[tuple[bytes, ...], Path] = {}
        self.runs: list[LoadResult] = []

    def other_cpus(self) -> float:
        """CPUs used on average by other processes of the machine during the load runs so far."""
        other = sum(float(r.extra["other_cpu_s"]) for r in self.runs)
        return other / max(1e-9, sum(r.seconds for r in self.runs))

    def run(self, server: Server, connections: int, seconds: int) -> LoadResult:
        before, machine, client = server.cpu_seconds(), machine_busy_s(), children_cpu_s()
        result = (self._wrk if self.tool == "wrk" else self._python)(server, connections, seconds)
        after = server.cpu_seconds()
        used = [after[pid] - before.get(pid, 0.0) for pid in after]
        # Server CPU per request, and the busiest process' share of it (2 workers: 0.5 if the connections are
        # spread evenly); CPU used meanwhile by processes other than the server and the load generator.
        result.extra["server_cpu_s"] = sum(used)
        result.extra["cpu_us_per_request"] = sum(used) / max(1, result.requests) * 1e6
        result.extra["busiest_process_share"] = max(used, default=0.0) / max(sum(used), 1e-9)
        result.extra["client_cpu_s"] = children_cpu_s() - client
        result.extra["other_cpu_s"] = max(
            0.0, machine_busy_s() - machine - result.extra["server_cpu_s"] - result.extra["client_cpu_s"]
        )
        self.runs.append(result)
        return result

    def _wrk(self, server: Server, connections: int, seconds: int) -> LoadResult:
        bodies = server.bodies or (server.body,)
        script = self._scripts.get(bodies)
        if script is None:
            script = self.workdir / f"post-{len(self._scripts)}.lua"
            script.write_text(wrk_script(bodies))
            self._scripts[bodies] = script
        command = [*self.pin, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
        result = subprocess.run([*command, "-s", str(script), server.url], capture_output=True, text=True, check=False)
        lines = [line for line in result.stdout.splitlines() if line.startswith("WRK_JSON ")]
        if result.returncode != 0 or not lines:
            raise SystemExit(f"wrk failed on {server.name}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        raw = json.loads(lines[-1].removeprefix("WRK_JSON "))
        tail = [line for line in result.stdout.splitlines() if line.startswith("WRK_TAIL ")]
        tail_ms = [float(value) / 1e3 for value in tail[-1].split()[1:]]
        return LoadResult(
            requests=raw["requests"],
            seconds=raw["duration_us"] / 1e6,
            p50_ms=raw["p50_us"] / 1e3,
            p99_ms=raw["p99_us"] / 1e3,
            errors=raw["status_errors"] + raw["socket_errors"],
            extra={
                "p90_ms": raw["p90_us"] / 1e3,
                "max_ms": raw["max_us"] / 1e3,
                "mean_ms": raw["mean_us"] / 1e3,
                "tail_ms": tail_ms,
            },
        )

    def _python(self, server: Server, connections: int, seconds: int) -> LoadResult:
        spec = {
            "port": server.port,
            "path": server.path,
            "bodies": [body.decode() for body in server.bodies or (server.body,)],
            "cpu": self.cpu,
            "connections": connections,
            "seconds": seconds,
        }
        # The spec goes through stdin: 2,000 varied bodies exceed the kernel's limit on one argument.
        result = subprocess.run(
            [sys.executable, __file__, "--loadgen-child", "-"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise SystemExit(f"load generator failed on {server.name}:\n{result.stderr[-3000:]}")
        raw = json.loads(result.stdout.strip().splitlines()[-1])
        return LoadResult(
            raw["requests"],
            raw["seconds"],
            raw["p50_ms"],
            raw["p99_ms"],
            raw["errors"],
            {"p90_ms": raw["p90_ms"], "max_ms": raw["max_ms"], "tail_ms": raw["tail_ms"]},
        )


def loadgen_child(spec: dict[str, Any]) -> None:
    """The Python fallback: ``connections`` keep-alive clients POSTing in a loop for ``seconds``."""
    if spec["cpu"] > 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {spec["cpu"]})
    head = f"POST {spec['path']} HTTP/1.1\r\nHost: 127.0.0.1:{spec['port']}\r\nContent-Type: application/json\r\n"
    bodies = [body.encode() for body in spec["bodies"]]
    requests = [f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body for body in bodies]
    turns = itertools.cycle(requests)  # shared by the clients: the bodies go out in turn, as from wrk
    latencies: list[int] = []
    errors = 0

    async def client(deadline: float) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", spec["port"])
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter_ns()
                writer.write(next(turns))
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                latencies.append(time.perf_counter_ns() - started)
                errors += status >= 400
        finally:
            writer.close()

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(client(started + spec["seconds"]) for _ in range(spec["connections"])))
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] / 1e6 if latencies else math.nan

    print(
        json.dumps(
            {
                "requests": len(latencies),
                "seconds": elapsed,
                "p50_ms": pct(50),
                "p90_ms": pct(90),
                "p99_ms": pct(99),
                "max_ms": latencies[-1] / 1e6 if latencies else math.nan,
                "tail_ms": [pct(level) for level in TAIL_LEVELS],
                "errors": errors,
            }
        )
    )


def merged_percentile(parts: Sequence[LoadResult], level: float) -> float:
    """The ``level`` percentile of all ``parts``' requests together, from each part's tail percentiles.

    Each part's share of requests at or below a latency is interpolated between its reported percentiles
    (``tail_ms`` at TAIL_LEVELS); the answer is the smallest reported latency at which the parts' shares, weighted
    by their requests, reach ``level``.
    """
    import numpy as np

    total = sum(p.requests for p in parts)
    candidates: list[float] = sorted({float(value) for p in parts for value in p.extra["tail_ms"]})
    for value in candidates:
        below = sum(p.requests * float(np.interp(value, p.extra["tail_ms"], TAIL_LEVELS)) for p in parts) / total
        if below >= level:
            return value
    return candidates[-1]


def interleaved(load: LoadGenerator, a: Server, b: Server, connections: int, seconds: int) -> dict[str, LoadResult]:
    """``a`` and ``b`` loaded in turns A B B A A B B A ... (about ``seconds`` each), so that drift cancels.

    Throughput is over all turns; p50 the median of the turns' p50; p99 that of all the turns' requests together
    (:func:`merged_percentile`), and the worst turn's p99 beside it. A spell of the machine's own (a 15 ms p99 in
    one 2 s turn, measured on either side alike) moves the worst turn, while the p99 of all requests stays what
    the server does.
    """
    segment = 2 if seconds >= 4 else 1
    turns = max(2, seconds // segment // 2 * 2)  # per server, even
    runs: dict[str, list[LoadResult]] = {a.name: [], b.name: []}
    for server in [a, b, b, a] * (turns // 2):
        runs[server.name].append(load.run(server, connections, segment))
    merged = {}
    for name, parts in runs.items():
        merged[name] = LoadResult(
            requests=sum(p.requests for p in parts),
            seconds=sum(p.seconds for p in parts),
            p50_ms=statistics.median(p.p50_ms for p in parts),
            p99_ms=merged_percentile(parts, 99.0),
            errors=sum(p.errors for p in parts),
            extra={
                "worst_turn_p99_ms": max(p.p99_ms for p in parts),
                "rounds_rps": [round(p.rps, 1) for p in parts],
                "cpu_us_per_request": sum(p.extra["server_cpu_s"] for p in parts)
                / max(1, sum(p.requests for p in parts))
                * 1e6,
                "busiest_process_share": [round(p.extra["busiest_process_share"], 2) for p in parts],
            },
        )
    return merged


def start_service(
    name: str,
    *,
    root: Path,
    env: dict[str, str],
    body: bytes,
    logs: Path,
    workers: int = 1,
    metrics: bool = True,
    update: bool = False,
    bodies: tuple[bytes, ...] = (),
) -> Server:
    """``python -m serving`` of the project at ``root`` on a free port, timed until ``body`` first scores.

    The read benchmarks repeat one transaction (same customer, same time) with the per-transaction customer
    update off; the update's benchmark turns it on and sends ``bodies`` (varied customers) in turn.
    """
    port = free_port()
    server = start(
        name,
        [sys.executable, "-m", "serving", "--port", str(port), "--workers", str(workers)],
        cwd=root,
        env={
            **env,
            "SERVING_METRICS_ENABLED": str(metrics).lower(),
            "SERVING_UPDATE_CUSTOMER_FEATURES": str(update).lower(),
        },
        port=port,
        path="/predict",
        body=body,
        logs=logs,
    )
    server.bodies = bodies
    return server


def varied_transactions(root: Path) -> tuple[bytes, ...]:
    """One `/predict` body per customer of the project's data, without id or time, as live traffic sends them.

    The service then gives each request a fresh transaction id and the arrival time: every request is a new event
    of its customer (the update's full path: log insert, row computation, Feast write), round robin over the
    customers so that each one's history grows as slowly as in real traffic.
    """
    import pandas as pd

    customers = pd.read_parquet(root / "data" / "validated" / "transactions.parquet", columns=["customer_id"])
    return tuple(
        json.dumps({**TRANSACTION, "customer_id": int(c)}).encode() for c in sorted(customers["customer_id"].unique())
    )


def run_update_http(
    root: Path, load: LoadGenerator, logs: Path, cleanup: contextlib.ExitStack, duration: int, warmup: int
) -> dict[str, Any]:
    """`/predict` over HTTP with the customer update on and off: 1 worker, 8 clients, varied customers, A B B A."""
    env, bodies = bench_env(root), varied_transactions(root)
    servers = []
    for name, update in (("ours-1w-update-on", True), ("ours-1w-update-off", False)):
        server = start_service(name, root=root, env=env, body=bodies[0], logs=logs, update=update, bodies=bodies)
        cleanup.callback(server.stop)
        load.run(server, CONNECTIONS, warmup)
        servers.append(server)
    on, off = servers
    runs = interleaved(load, on, off, CONNECTIONS, duration)
    for server in servers:
        server.stop()
    return {"update_on_c8": vars(runs[on.name]), "update_off_c8": vars(runs[off.name]), "customers": len(bodies)}


# ----------------------------------------------------------------------------------------------- the run
def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"cpus": os.cpu_count(), "duration_s": args.duration}
    with tempfile.TemporaryDirectory(prefix="mlops-bench-serving-") as tmp, contextlib.ExitStack() as cleanup:
        work = Path(tmp)
        if args.project:
            root = args.project.resolve()
            results["repro_s"] = None
        else:
            root = work / "project"
            print(
                f"preparing a trained clone of HEAD{' + worktree changes' if args.worktree else ''} ...",
                file=sys.stderr,
            )
            results["repro_s"] = prepare(root, worktree=args.worktree)
        env = bench_env(root)
        # A fixed event time, so that our service and the inline-features baseline score exactly the same row.
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        transaction = {**TRANSACTION, "event_timestamp": now.isoformat()}

        print("in-process micro-benchmarks ...", file=sys.stderr)
        micro = run_micro(root, transaction, args.iterations)
        results["micro"] = micro
        print("customer update: scoring with vs without (in-process, interleaved) ...", file=sys.stderr)
        results["updates"] = run_updates(root, args.iterations)
        if micro["missing_features"]:
            raise SystemExit(f"the benchmark entities miss online features: {micro['missing_features']}")
        if micro["sqlite_disagrees_on"]:
            raise SystemExit(f"the direct SQLite read disagrees with Feast on {micro['sqlite_disagrees_on']}")
        ours_body = json.dumps(transaction).encode()
        mlflow_body = json.dumps({"dataframe_split": {"columns": micro["columns"], "data": [micro["row"]]}}).encode()

        load = LoadGenerator(args.load_tool, work)
        results["load_tool"] = load.note
        results["loadavg_before"] = os.getloadavg()

        def ours(name: str, *, workers: int = 1, metrics: bool = True) -> Server:
            server = start_service(
                name, root=root, env=env, body=ours_body, logs=work, workers=workers, metrics=metrics
            )
            cleanup.callback(server.stop)
            return server

        def mlflow_serve(name: str) -> Server:
            port = free_port()
            command = [
                "mlflow",
                "models",
                "serve",
                "-m",
                f"models:/{MODEL_NAME}@{ALIAS}",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ]
            server = start(
                name,
                command,
                cwd=root,
                env={**env, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"},
                port=port,
                path="/invocations",
                body=mlflow_body,
                logs=work,
            )
            cleanup.callback(server.stop)
            return server

        def warm(server: Server) -> None:
            load.run(server, CONNECTIONS, args.warmup)

        # 6. start-up, one process at a time, in turns A B B A; the last two serve 1. and 3.
        print("start-up: ours, mlflow models serve, mlflow models serve, ours ...", file=sys.stderr)
        starts: dict[str, list[float]] = {"ours": [], "mlflow": []}
        for kind in ("ours", "mlflow"):
            server = ours("ours-1w-first") if kind == "ours" else mlflow_serve("mlflow-first")
            starts[kind].append(server.startup_s)
            server.stop()
        mlflow = mlflow_serve("mlflow")
        one = ours("ours-1w")
        starts["mlflow"].append(mlflow.startup_s)
        starts["ours"].append(one.startup_s)
        print("load: ours and mlflow models serve ...", file=sys.stderr)
        ours_score = json.loads(one.first_response)["fraud_probability"]
        mlflow_score = json.loads(mlflow.first_response)["predictions"][0]
        mlflow_score = mlflow_score[-1] if isinstance(mlflow_score, list) else mlflow_score
        results["same_score"] = {
            "ours": ours_score,
            "mlflow": mlflow_score,
            "equal": math.isclose(ours_score, mlflow_score, rel_tol=1e-9, abs_tol=1e-12),
        }
        warm(one)
        warm(mlflow)
        headline = interleaved(load, one, mlflow, CONNECTIONS, args.duration)
        ours_c1 = load.run(one, 1, args.duration)
        mlflow.stop()

        print("metrics on vs off (interleaved) ...", file=sys.stderr)
        off = ours("ours-1w-metrics-off", metrics=False)
        warm(off)
        metrics_runs = interleaved(load, one, off, CONNECTIONS, args.duration)
        off.stop()

        print("1 vs 2 workers (interleaved) ...", file=sys.stderr)
        two = ours("ours-2w", workers=2)
        warm(two)
        worker_runs = interleaved(load, one, two, CONNECTIONS, args.duration)
        two.stop()
        one.stop()

        print("customer update on vs off over HTTP (interleaved, varied customers) ...", file=sys.stderr)
        results["update_http"] = run_update_http(root, load, work, cleanup, args.duration, args.warmup)
        results["loadavg_after"] = os.getloadavg()
        results["other_cpus_during_load"] = load.other_cpus()

        results["startup_s"] = {
            "ours_1w": starts["ours"],
            "mlflow": starts["mlflow"],
            "ours_1w_metrics_off": off.startup_s,
            "ours_2w": two.startup_s,
        }
        results["load"] = {
            "ours_1w_c8": vars(headline[one.name]),
            "mlflow_c8": vars(headline[mlflow.name]),
            "ours_1w_c1": vars(ours_c1),
            "metrics_on_c8": vars(metrics_runs[one.name]),
            "metrics_off_c8": vars(metrics_runs[off.name]),
            "workers_1_c8": vars(worker_runs[one.name]),
            "workers_2_c8": vars(worker_runs[two.name]),
        }
        errors = {name: run["errors"] for name, run in results["load"].items() if run["errors"]}
        if errors:
            raise SystemExit(f"load runs had failed requests (see the logs in {work}): {errors}")
    return results


def rps(run: dict[str, Any]) -> float:
    return float(run["requests"] / run["seconds"])


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def turns(run: dict[str, Any]) -> str:
    return ", ".join(f"{value:,.0f}" for value in run["extra"]["rounds_rps"])


def report(results: dict[str, Any]) -> str:
    load, micro, start_s, t = results["load"], results["micro"], results["startup_s"], TARGETS
    ours8, mlf8, ours1 = load["ours_1w_c8"], load["mlflow_c8"], load["ours_1w_c1"]
    ratio = rps(ours8) / rps(mlf8)
    model, lookup = micro["model_us"], micro["lookup_us"]
    model_ratio = model["service_predict"] / model["raw_predict_proba"]
    lookup_ratio = lookup["service_lookup"] / lookup["sqlite_direct"]
    tail = ours8["p99_ms"] / ours1["p50_ms"]
    on, off = rps(load["metrics_on_c8"]), rps(load["metrics_off_c8"])
    cost = (off - on) / off * 100
    one, two = load["workers_1_c8"], load["workers_2_c8"]
    scaling = rps(two) / rps(one)
    shares = ", ".join(f"{share:.0%}" for share in two["extra"]["busiest_process_share"])
    ours_start, mlflow_start = statistics.mean(start_s["ours_1w"]), statistics.mean(start_s["mlflow"])
    startup_ok = ours_start <= mlflow_start and ours_start <= t["startup_max_s"]
    lines = [
        "| measurement | ours | baseline (same run) | target | verdict |",
        "|---|---|---|---|---|",
        f"| `/predict` by entity ids with online lookup, 1 worker, {CONNECTIONS} clients (turns A B B A) | "
        f"{rps(ours8):,.0f} req/s (p50 {ours8['p50_ms']:.1f} ms, p99 {ours8['p99_ms']:.1f} ms; server CPU "
        f"{ours8['extra']['cpu_us_per_request']:,.0f} µs/req) | `mlflow models serve`, features inline: "
        f"{rps(mlf8):,.0f} req/s (p50 {mlf8['p50_ms']:.1f} ms, p99 {mlf8['p99_ms']:.1f} ms; server CPU "
        f"{mlf8['extra']['cpu_us_per_request']:,.0f} µs/req) | ≥ {t['throughput_vs_mlflow']:.0f}x | "
        f"{ratio:.2f}x {verdict(ratio >= t['throughput_vs_mlflow'])} |",
        f"| model call, 1 row ({micro['estimator']}: {', '.join(micro['steps'])}), median | `LoadedModel.predict` "
        f"{model['service_predict']:.0f} µs | raw `predict_proba`, same NumPy row: {model['raw_predict_proba']:.0f} "
        f"µs (pyfunc `predict` on a 1-row DataFrame: {model['pyfunc_predict']:,.0f} µs) | "
        f"≤ {t['model_call_vs_raw']}x | {model_ratio:.2f}x {verdict(model_ratio <= t['model_call_vs_raw'])} |",
        f"| online lookup, 1 customer + 1 merchant, median | `OnlineFeatures.lookup` {lookup['service_lookup']:.0f} "
        f"µs | sqlite3 on the online store (keys, SELECTs, decode): {lookup['sqlite_direct']:.0f} µs "
        f"(SELECTs alone {lookup['sqlite_select_only']:.0f} µs) | ≤ {t['lookup_vs_sqlite']:.0f}x | "
        f"{lookup_ratio:.1f}x {verdict(lookup_ratio <= t['lookup_vs_sqlite'])} |",
        f"| tail latency | p99 at {CONNECTIONS} clients (all turns' requests) {ours8['p99_ms']:.1f} ms (worst turn "
        f"{ours8['extra']['worst_turn_p99_ms']:.1f} ms) | p50 at 1 client "
        f"{ours1['p50_ms']:.2f} ms ({rps(ours1):,.0f} req/s) | ≤ {t['p99_8_vs_p50_1']:.0f}x | "
        f"{tail:.1f}x {verdict(tail <= t['p99_8_vs_p50_1'])} |",
        f"| workers, {CONNECTIONS} clients (turns A B B A) | 2 workers {rps(two):,.0f} req/s (turns: {turns(two)}; "
        f"busiest worker's share of the CPU: {shares}) | 1 worker {rps(one):,.0f} req/s (turns: {turns(one)}) | "
        f"≥ {t['two_vs_one_worker']}x | {scaling:.2f}x {verdict(scaling >= t['two_vs_one_worker'])} |",
        f"| metrics cost, 1 worker, {CONNECTIONS} clients (turns A B B A) | metrics on {on:,.0f} req/s "
        f"(turns: {turns(load['metrics_on_c8'])}) | `SERVING_METRICS_ENABLED=false` {off:,.0f} req/s "
        f"(turns: {turns(load['metrics_off_c8'])}) | ≤ {t['metrics_cost_pct']:.0f} % | "
        f"{cost:.1f} % {verdict(cost <= t['metrics_cost_pct'])} |",
        f"| start-up to the first 200 scoring call (mean of 2 starts, A B B A) | {ours_start:.1f} s "
        f"({', '.join(f'{v:.1f}' for v in start_s['ours_1w'])}; later: metrics off "
        f"{start_s['ours_1w_metrics_off']:.1f} s, 2 workers {start_s['ours_2w']:.1f} s) | `mlflow models serve`: "
        f"{mlflow_start:.1f} s ({', '.join(f'{v:.1f}' for v in start_s['mlflow'])}) | ≤ mlflow's and "
        f"≤ {t['startup_max_s']:.0f} s | {ours_start / mlflow_start:.2f}x {verdict(startup_ok)} |",
    ]
    same = results["same_score"]
    notes = [
        "",
        f"Load: {results['load_tool']}; {results['duration_s']} s per figure after a warm-up. Machine: "
        f"{results['cpus']} CPUs; other processes used {results['other_cpus_during_load']:.2f} CPUs on average "
        f"during the load runs (load average {results['loadavg_before'][0]:.1f} before, "
        f"{results['loadavg_after'][0]:.1f} after)."
        + (f" `dvc repro` of the clone: {results['repro_s']:.0f} s." if results.get("repro_s") else ""),
        f"Both servers scored the same row: ours {same['ours']:.6g}, mlflow {same['mlflow']:.6g}"
        + ("." if same["equal"] else " (**they differ**)."),
    ]
    return "\n".join(lines + notes) + "\n\n" + updates_report(results["updates"], results["update_http"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per figure (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of load before measuring a server")
    parser.add_argument("--iterations", type=int, default=2000, help="calls per in-process median")
    parser.add_argument("--load-tool", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--worktree", action="store_true", help="clone HEAD plus uncommitted changes to tracked files")
    parser.add_argument("--project", type=Path, help="reuse an already trained project folder (skips the clone)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--updates-only", action="store_true", help="only the customer-update cost (with --project: a trained project)"
    )
    parser.add_argument("--loadgen-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen_child:
        loadgen_child(json.loads(sys.stdin.read()))  # the spec, from stdin (LoadGenerator._python)
        return 0
    if args.updates_only:
        if not args.project:
            raise SystemExit("--updates-only needs --project (a trained project folder)")
        root = args.project.resolve()
        figures = run_updates(root, args.iterations)
        with tempfile.TemporaryDirectory(prefix="mlops-bench-updates-") as tmp, contextlib.ExitStack() as cleanup:
            load = LoadGenerator(args.load_tool, Path(tmp))
            http = run_update_http(root, load, Path(tmp), cleanup, args.duration, args.warmup)
        print(updates_report(figures, http))
        print(f"\nLoad: {load.note}; {args.duration} s per figure after a {args.warmup} s warm-up.")
        if args.json:
            args.json.write_text(json.dumps({"in_process": figures, "http": http}, indent=2))
        return 0
    started = time.perf_counter()
    results = run(args)
    results["total_s"] = time.perf_counter() - started
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
