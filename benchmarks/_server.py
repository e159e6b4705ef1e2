"""The servers the benchmarks talk to, each in a process of its own on 127.0.0.1.

* ``local_server()``: the fixed-receipt server for throughput runs. nginx when it is installed
  (it answers far faster than any Python client can ask, so the client is what is measured),
  else a minimal aiohttp app (``_aiohttp_server.py``).
* ``fake_oms_server()``: ``vtex_tracking.testing.FakeOMS`` with a rate limit, in a subprocess
  (``_fake_oms_server.py``) so its CPU does not compete with the client's interpreter.

Every start waits with a deadline, and every process started here is killed on the way out.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ._workload import BODY, HEADERS, RECEIPT_PREFIX, RECEIPT_SUFFIX, order_id, path, receipt

#: Seconds a server may take to start answering.
START_TIMEOUT = 10.0
#: Seconds a server gets to exit after SIGTERM before SIGKILL.
STOP_TIMEOUT = 3.0

_HERE = Path(__file__).resolve().parent

NGINX_CONF = """\
worker_processes 1;
master_process off;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location ~ ^/api/oms/pvt/orders/([^/]+)/ {{
            default_type application/json;
            return 200 '{receipt}';
        }}
    }}
}}
"""


@dataclass
class Server:
    """A running server: its kind (``nginx``/``aiohttp``/``fake_oms``), URL and process."""

    kind: str
    url: str
    version: str
    process: subprocess.Popen[bytes]
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "url": self.url, "notes": self.notes}


def find_nginx() -> str | None:
    """The nginx binary, also where Debian puts it outside a non-root PATH."""
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int, deadline: float, process: subprocess.Popen[bytes]) -> bool:
    """Wait until ``port`` answers a tracking PUT with the receipt, or the deadline passes."""
    while time.monotonic() < deadline and process.poll() is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
        try:
            conn.request("PUT", path(0), body=BODY, headers=HEADERS)
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and json.loads(body) == json.loads(receipt(order_id(0))):
                return True
        except (OSError, http.client.HTTPException, ValueError):
            time.sleep(0.05)
        finally:
            conn.close()
    return False


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a process we started (SIGTERM, then SIGKILL) and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _start_nginx(binary: str, tmp: Path) -> Server | None:
    version = subprocess.run(
        [binary, "-v"], capture_output=True, text=True, timeout=5, check=False
    ).stderr.strip()
    for _ in range(3):  # the port could be taken between choosing it and nginx binding it
        port = _free_port()
        conf = tmp / "nginx.conf"
        # The order id captured from the path ($1) goes into the receipt, as VTEX echoes it.
        answer = (RECEIPT_PREFIX + b"$1" + RECEIPT_SUFFIX).decode()
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, receipt=answer))
        process = subprocess.Popen(
            [binary, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the harness must not kill it first
        )
        if _answers(port, time.monotonic() + START_TIMEOUT, process):
            return Server("nginx", f"http://127.0.0.1:{port}", version, process)
        stop_process(process)
    return None


def read_line(stream: IO[bytes], deadline: float) -> str | None:
    """One line from a child's stdout, or None when the deadline passes first."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    ready, _, _ = select.select([stream], [], [], remaining)
    if not ready:
        return None
    line = stream.readline()
    return line.decode().strip() if line else None


def start_python_server(module: str, args: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m benchmarks.<module>``; it prints its URL as its first line.

    Its stdin stays a pipe held by us: the server exits when it reads EOF, so even a harness
    killed with SIGKILL leaves nothing behind.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=_HERE.parent,
        env=child_env(),
        start_new_session=True,
    )
    assert process.stdout is not None
    line = read_line(process.stdout, time.monotonic() + START_TIMEOUT)
    if not line or not line.startswith("http://127.0.0.1:"):
        stop_process(process)
        raise RuntimeError(f"benchmarks.{module} did not start (said {line!r})")
    return process, line


def child_env() -> dict[str, str]:
    """The environment for our subprocesses: ``benchmarks`` importable, output unbuffered."""
    env = dict(os.environ)
    root = str(_HERE.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextlib.contextmanager
def local_server(prefer: str = "auto") -> Iterator[Server]:
    """The fixed-receipt server (``prefer``: ``auto``, ``nginx`` or ``aiohttp``)."""
    server: Server | None = None
    notes: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="vtex-bench-nginx-"))
    try:
        if prefer in ("auto", "nginx"):
            binary = find_nginx()
            if binary is None:
                notes.append("nginx not installed: using the aiohttp fallback server")
            else:
                server = _start_nginx(binary, tmp)
                if server is None:
                    log = tmp / "error.log"
                    tail = log.read_text()[-300:] if log.exists() else ""
                    notes.append(f"nginx failed to start ({tail.strip()!r}): using aiohttp")
        if server is None:
            import aiohttp

            process, url = start_python_server("_aiohttp_server", [])
            server = Server("aiohttp", url, f"aiohttp {aiohttp.__version__}", process)
        server.notes.extend(notes)
        yield server
    finally:
        if server is not None:
            stop_process(server.process)
        shutil.rmtree(tmp, ignore_errors=True)


class FakeOMSProcess:
    """A ``FakeOMS`` in a subprocess, driven over its stdin: reset it, count its statuses."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        #: Every URL it listens on (``ports``), the first one as ``url``.
        self.urls = url.split()
        self.url = self.urls[0]

    def _ask(self, command: str) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        line = read_line(self.process.stdout, time.monotonic() + START_TIMEOUT)
        if line is None:
            raise RuntimeError(f"FakeOMS server did not answer {command!r}")
        return json.loads(line)

    def reset(self) -> None:
        """Forget recorded requests and refill the server's token bucket."""
        self._ask("reset")

    def limit(self, rate: float | None) -> None:
        """Limit the server to ``rate`` requests per second from now on (None: unlimited),
        with a full bucket: the same server (one target) plays a fast and a slow VTEX."""
        self._ask(f"limit {rate}")

    def statuses(self) -> dict[str, int]:
        """How many answers of each HTTP status the server gave since the last reset."""
        return {str(k): int(v) for k, v in self._ask("statuses").items()}

    def timeline(self) -> list[tuple[float, int, str | None]]:
        """``(received_at, status, store)`` per request since the last reset, in
        ``time.monotonic()`` seconds (the same clock in every process of this machine)."""
        return [(float(t), int(status), store) for t, status, store in self._ask("timeline")]

    def statuses_by_store(self) -> dict[str, dict[str, int]]:
        """``statuses()`` per store (``""``: requests with the server's own credentials)."""
        answer = self._ask("statuses_by_store")
        return {
            store: {str(k): int(v) for k, v in counts.items()} for store, counts in answer.items()
        }


@contextlib.contextmanager
def fake_oms_server(
    rate_limit: float | None,
    burst: int,
    retry_after: str,
    stores: dict[str, dict[str, Any]] | None = None,
    latency: float = 0.0,
    ports: int = 1,
) -> Iterator[FakeOMSProcess]:
    """``FakeOMS(rate_limit=..., burst=..., retry_after=..., latency=...)`` in its own process;
    ``stores`` adds stores told apart by credentials (see ``_fake_oms_server``); ``latency``
    delays every answer by that many seconds; ``ports`` > 1 listens on that many ports
    (``FakeOMSProcess.urls``), one host per store."""
    args = ["--burst", str(burst), "--retry-after", retry_after]
    if latency:
        args += ["--latency", str(latency)]
    if rate_limit is not None:
        args += ["--rate-limit", str(rate_limit)]
    if stores:
        args += ["--stores", json.dumps(stores)]
    if ports > 1:
        args += ["--ports", str(ports)]
    process, url = start_python_server("_fake_oms_server", args)
    try:
        yield FakeOMSProcess(process, url)
    finally:
        stop_process(process)
