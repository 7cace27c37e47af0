"""A private `redis-server` on 127.0.0.1 that a test may kill and restart: the machine's
shared Redis is never touched. No persistence, so a restart loses everything, as a
crashed cache-only Redis would."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import pytest
import redis

from tests.conftest import ON_CI


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    def __init__(self, log: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if ON_CI:
                pytest.fail("redis-server is required on CI")
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.log = log
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> Self:
        with self.log.open("ab") as output:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_answering()
        return self

    def kill(self) -> None:
        """SIGKILL: connections drop, queued messages and keys are gone."""
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)
            self._process = None

    def restart(self) -> None:
        self.restarts += 1
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    def _wait_until_answering(self, timeout_s: float = 10) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()
