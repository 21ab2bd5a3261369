"""Measuring helpers shared by the benchmarks: latency summaries, a keep-alive HTTP client,
parallel loops and wrk runs (with the full latency distribution, via a Lua `done` hook)."""

from __future__ import annotations

import http.client
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The percentiles kept of every distribution (the chart plots them; the table reads p50/p99).
CURVE = [*range(1, 100), 99.5, 99.9]


def percentile(values: list[float], q: float) -> float:
    """The `q`-th percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(samples_ms: list[float], **extra: Any) -> dict[str, Any]:
    """p50/p90/p99/max/mean of latencies in ms, plus the percentile curve for the chart."""
    return {
        "n": len(samples_ms),
        "p50_ms": statistics.median(samples_ms),
        "p90_ms": percentile(samples_ms, 90),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": max(samples_ms),
        "mean_ms": statistics.fmean(samples_ms),
        "curve": [[q, percentile(samples_ms, q)] for q in CURVE],
        **extra,
    }


def timed_parallel(fn: Callable[[], object], total: int, concurrency: int) -> dict[str, Any]:
    """Run `fn` `total` times on `concurrency` threads; return the latency summary and the rate
    (calls per second of wall time)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker() -> None:
        for _ in counter:
            started = time.perf_counter()
            try:
                fn()
            except BaseException as exc:  # reported once the loop is over
                errors.append(exc)
                return
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise errors[0]
    return summary(latencies, rate=total / wall, wall_s=wall, concurrency=concurrency)


class Http:
    """A keep-alive HTTP/1.1 client, one connection per thread (as a real client pool would)."""

    def __init__(self, port: int, token: str = "") -> None:
        self.port = port
        self.token = token
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self._local.conn = conn
        return conn

    def request(
        self, method: str, path: str, body: Any = None, *, auth: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request; return (status, headers, body). Reconnects once if the server
        closed the idle connection."""
        headers = {"Connection": "keep-alive"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.token:
            headers["Authorization"] = f"Token {self.token}"
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                reply = conn.getresponse()
                payload = reply.read()
                return reply.status, dict(reply.getheaders()), payload
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> bytes:
        """Send one request and assert a 2xx answer; return the body."""
        status, _, payload = self.request(method, path, body, auth=auth)
        assert 200 <= status < 300, (status, payload[:500])
        return payload


WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "curve": [', summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
  local qs = {QUANTILES}
  for i, q in ipairs(qs) do
    if i > 1 then io.write(", ") end
    io.write(string.format("[%g, %d]", q, latency:percentile(q)))
  end
  io.write(string.format('], "max_us": %d, "mean_us": %g}\\n', latency.max, latency.mean))
end
"""


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int = 16,
    threads: int = 2,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run wrk against `url`; return req/s, p50/p99 (ms), the percentile curve and error counts.
    Raises AssertionError when any request failed (connection error or a non-2xx/3xx status)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (make system-deps installs it)")
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT.replace("QUANTILES", ", ".join(f"{q:g}" for q in CURVE)))
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
    ]
    for name, value in (headers or {}).items():
        args += ["-H", f"{name}: {value}"]
    try:
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    finally:
        script.unlink()
    line = next(x for x in out.splitlines() if x.startswith("BENCH-JSON "))
    data = json.loads(line.removeprefix("BENCH-JSON "))
    failed = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    assert failed == 0, f"wrk {url}: {failed} failed requests\n{out}"
    if data["requests"] == 0:
        print(f"wrk {url}: no request completed in {seconds:g} s\n{out}", file=sys.stderr)
    curve = [[q, us / 1000] for q, us in data["curve"]]
    at = dict((q, ms) for q, ms in curve)
    return {
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "requests": data["requests"],
        "p50_ms": at[50],
        "p90_ms": at[90],
        "p99_ms": at[99],
        "max_ms": data["max_us"] / 1000,
        "mean_ms": data["mean_us"] / 1000,
        "curve": curve,
        "connections": connections,
        "seconds": seconds,
    }


def load_average() -> str:
    """The 1/5/15-minute load averages, as `uptime` prints them."""
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])
