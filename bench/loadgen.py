"""An HTTP load generator, run as its own process: `wrk` when it is installed, otherwise a
small asyncio client (keep-alive connections, each sending its next request when the
last answer is in, like wrk).

    python -m bench.loadgen http://127.0.0.1:8000/health --connections 64 --duration-s 10

Prints one JSON object: requests, errors (non-2xx or broken connections), rps, p50_ms,
p99_ms, tool. The Python client is written on bare asyncio streams because a full HTTP
client (httpx) spends more CPU per request than the endpoints under test on a 2-core box,
and would measure itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.stats import percentile

WRK_TIMEOUT_S = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[], help='"Name: value"')
    parser.add_argument("--python", action="store_true", help="use the Python client, not wrk")
    options = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk and not options.python and options.duration_s >= 1:
        result = _run_wrk(wrk, options.url, options.connections, options.duration_s, options.header)
    else:
        result = asyncio.run(
            _run_python(options.url, options.connections, options.duration_s, options.header)
        )
    print(json.dumps(result))  # noqa: T201  (the parent reads it)


# --- wrk ------------------------------------------------------------------------------

_WRK_LUA = """
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("BENCH %d %d %.6f %d %d\\n", summary.requests, errors,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(99)))
end
"""


def _run_wrk(
    wrk: str, url: str, connections: int, duration_s: float, headers: list[str]
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_WRK_LUA)
        script.flush()
        command = [
            wrk,
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "-s",
            script.name,
            # wrk's default (2 s) would drop the slowest answers from the percentiles.
            "--timeout",
            f"{WRK_TIMEOUT_S}s",
        ]
        for header in headers:
            command += ["-H", header]
        output = subprocess.run(
            [*command, url], capture_output=True, text=True, check=True, timeout=duration_s + 60
        ).stdout
    match = re.search(r"^BENCH (\d+) (\d+) ([\d.]+) (\d+) (\d+)$", output, re.MULTILINE)
    if match is None:
        raise SystemExit(f"unexpected wrk output:\n{output}")
    requests, errors = int(match.group(1)), int(match.group(2))
    seconds = float(match.group(3))
    return {
        "tool": "wrk",
        "requests": requests,
        "errors": errors,
        "duration_s": round(seconds, 2),
        "rps": round(requests / seconds, 1),
        "p50_ms": int(match.group(4)) / 1000,
        "p99_ms": int(match.group(5)) / 1000,
    }


# --- the Python client ----------------------------------------------------------------


async def _run_python(
    url: str, connections: int, duration_s: float, headers: list[str]
) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{h}\r\n" for h in headers)
    request = (head + "\r\n").encode()
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()
    deadline = started + duration_s
    await asyncio.gather(
        *(_connection(host, port, request, deadline, latencies, errors) for _ in range(connections))
    )
    elapsed = time.perf_counter() - started
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return {
        "tool": "python-asyncio",
        "requests": len(latencies),
        "errors": errors[0],
        "duration_s": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": None if p50 is None else round(p50 * 1000, 2),
        "p99_ms": None if p99 is None else round(p99 * 1000, 2),
    }


async def _connection(
    host: str, port: int, request: bytes, deadline: float, latencies: list[float], errors: list[int]
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < deadline:
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(host, port)
            sent = time.perf_counter()
            writer.write(request)
            status, keep_alive = await _read_response(reader)
            latencies.append(time.perf_counter() - sent)
            if not 200 <= status < 300:
                errors[0] += 1
            if not keep_alive:
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors[0] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    if fields.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields.get("connection", "").lower() != "close"


def run_load(
    url: str,
    *,
    connections: int,
    duration_s: float,
    headers: list[str] | None = None,
    python_client: bool = False,
) -> dict[str, Any]:
    """Run the load generator as a separate process and return its figures."""
    command = [
        sys.executable,
        "-m",
        "bench.loadgen",
        url,
        "--connections",
        str(connections),
        "--duration-s",
        str(duration_s),
    ]
    for header in headers or []:
        command += ["--header", header]
    if python_client:
        command.append("--python")
    root = Path(__file__).resolve().parent.parent
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration_s + 120, cwd=root
    ).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    main()
