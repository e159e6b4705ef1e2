"""FakeOMS in a process of its own, for tests that kill the client with SIGKILL (the server
must outlive it and keep its record of what it confirmed).

Run as ``python -m tests.oms_process``: prints the URL, then answers one JSON line per
command on stdin: ``count`` (answers 2xx so far) or ``log`` (``[order_id, events, status,
received_at]`` per request: ``events`` is how many tracking events were sent, ``received_at``
is on ``time.monotonic()``, the clock every process of the machine shares). Exits at EOF.
``OmsProcess`` drives it from a test.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from vtex_tracking.testing import FakeOMS

#: Seconds the server may take to start or to answer a command.
TIMEOUT = 20.0


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    async with FakeOMS(require_tracking_number=False) as oms:
        print(oms.url, flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = line.strip()
            if command == "count":
                answer: Any = sum(1 for r in oms.requests if 200 <= r.status < 300)
            elif command == "log":
                answer = [
                    [r.order_id, len(r.json()["events"]), r.status, r.received_at]
                    for r in oms.requests
                ]
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


class OmsProcess:
    """The server above, started by ``with OmsProcess() as oms`` and stopped at the end."""

    def __init__(self) -> None:
        root = Path(__file__).resolve().parent.parent
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.oms_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            text=True,
        )
        self.url = self._read_line()

    def _read_line(self) -> str:
        assert self._process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        line = self._process.stdout.readline()  # the server answers each line at once
        if not line or time.monotonic() > deadline:
            raise RuntimeError("the FakeOMS process did not answer")
        return line.strip()

    def _ask(self, command: str) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return json.loads(self._read_line())

    def confirmed(self) -> int:
        """Requests answered 2xx so far."""
        return int(self._ask("count"))

    def log(self) -> list[tuple[str, int, int, float]]:
        """Every request so far: ``(order_id, events, status, received_at)``."""
        return [(o, int(e), int(s), float(t)) for o, e, s, t in self._ask("log")]

    def __enter__(self) -> OmsProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.close()
        try:
            self._process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process.stdout.close()


if __name__ == "__main__":
    asyncio.run(_serve())
