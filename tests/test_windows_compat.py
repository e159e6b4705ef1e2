"""The package, the sync client and the CLI where POSIX-only calls do not exist (Windows).

No Windows machine runs this suite, so each test starts a Python whose POSIX-only parts are
taken away before ``vtex_tracking`` is imported (``WINDOWS_LIKE``): no ``os.register_at_fork``
or ``fork``, no ``fcntl``/``resource``/``pwd``, only the signals Windows has, and an event loop
that, like Windows' ProactorEventLoop, raises NotImplementedError for ``add_signal_handler`` and
``add_reader``. Then it imports, pushes and runs ``fake-server`` and ``push`` in it for real.

Also ``python -m vtex_tracking``, the command for where the scripts folder is not on PATH.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

from vtex_tracking import __version__
from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN, read_records

ROOT = pathlib.Path(__file__).resolve().parent.parent
JSONL = ROOT / "examples" / "sample-updates.jsonl"

#: Run before anything else in a ``python -c`` script: what Windows lacks, taken away.
WINDOWS_LIKE = textwrap.dedent(
    """
    import asyncio
    import asyncio.selector_events
    import asyncio.unix_events
    import os
    import signal
    import sys

    for name in ("register_at_fork", "fork", "forkpty", "getuid", "geteuid", "getpgid",
                 "setsid", "killpg"):
        if hasattr(os, name):
            delattr(os, name)
    for name in ("fcntl", "resource", "pwd", "grp", "termios"):
        sys.modules[name] = None  # "import fcntl" raises ImportError
    WINDOWS_SIGNALS = {"SIGABRT", "SIGFPE", "SIGILL", "SIGINT", "SIGSEGV", "SIGTERM"}
    for name in [n for n in dir(signal) if n.startswith("SIG") and not n.startswith("SIG_")]:
        if name not in WINDOWS_SIGNALS:
            delattr(signal, name)

    def _not_on_windows(*args, **kwargs):
        raise NotImplementedError

    # asyncio's own code calls the private _add_reader and the remove_* methods: these two
    # (and the signal handlers) are what the ProactorEventLoop refuses to an application.
    for method in ("add_reader", "add_writer"):
        setattr(asyncio.selector_events.BaseSelectorEventLoop, method, _not_on_windows)
    for method in ("add_signal_handler", "remove_signal_handler"):
        setattr(asyncio.unix_events._UnixSelectorEventLoop, method, _not_on_windows)
    """
)

#: The CLI, in a Windows-like Python: ``python -c CLI push ...``.
CLI = WINDOWS_LIKE + "from vtex_tracking.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"


def _run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def _start(script: str, *args: str, cwd: pathlib.Path = ROOT) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        cwd=cwd,
    )


@contextlib.contextmanager
def _killed_on_failure(process: subprocess.Popen[str]) -> Iterator[None]:
    """Kill ``process`` if the test fails before it exits (its ``with`` then reaps it)."""
    try:
        yield
    finally:
        if process.poll() is None:
            process.kill()


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_package_imports_where_fork_and_unix_signals_do_not_exist() -> None:
    """vtex_tracking, its CLI, its testing helpers and its Celery integration import in a
    Python without os.register_at_fork, fcntl, resource or SIGHUP."""
    script = WINDOWS_LIKE + textwrap.dedent(
        """
        assert not hasattr(os, "register_at_fork") and not hasattr(signal, "SIGHUP")
        import vtex_tracking, vtex_tracking.cli, vtex_tracking.testing, vtex_tracking.celery
        print("imported", vtex_tracking.__version__)
        """
    )
    done = _run(script)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"imported {__version__}\n"


def test_the_sync_client_pushes_where_fork_and_loop_signals_do_not_exist() -> None:
    """TrackingClient pushes the sample file to FakeOMS from a Windows-like Python: every
    update confirmed and applied."""
    script = WINDOWS_LIKE + textwrap.dedent(
        """
        from vtex_tracking import TrackingClient, read_updates

        url, key, token, path = sys.argv[1:]
        with TrackingClient("acme", key, token, base_url=url) as client:
            summary = client.push_all(read_updates(path))
        print(summary.total, summary.succeeded)
        """
    )
    with FakeOMS(require_tracking_number=False) as oms:
        done = _run(script, oms.url, APP_KEY, APP_TOKEN, str(JSONL))
        applied = sum(len(bodies) for bodies in oms.updates.values())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["30", "30"]
    assert applied == 30


def test_fake_server_stops_on_ctrl_c_where_the_loop_has_no_signal_handlers() -> None:
    """fake-server, in a Windows-like Python, serves a push and stops on Ctrl-C (SIGINT, the
    signal Windows has) with exit 0 and its summary."""
    with _start(CLI, "fake-server", "--port", "0") as process, _killed_on_failure(process):
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(5)]
        assert banner[-1] == "Press Ctrl-C to stop.\n", banner
        url = banner[0].rsplit(" ", 1)[1].strip()
        code = main(
            [
                *("push", str(JSONL), "--base-url", url, "--account", "acme", "--quiet"),
                *("--app-key", APP_KEY, "--app-token", APP_TOKEN),
            ]
        )
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert code == 0
    assert process.returncode == 0, err
    assert "Stopped after 30 requests" in out
    assert "Traceback" not in err


def test_push_interrupted_where_the_loop_has_no_readers_accounts_for_everything(
    tmp_path: pathlib.Path,
) -> None:
    """push, in a Windows-like Python (no add_reader to wake the loop with), stops on Ctrl-C
    with exit 130: every update was accepted by the server or is in the failures file."""
    template = json.loads(JSONL.read_text(encoding="utf-8").splitlines()[0])
    orders = {f"big-{n}" for n in range(1000)}
    with (tmp_path / "big.jsonl").open("w", encoding="utf-8") as out:
        for order in sorted(orders):
            out.write(json.dumps({**template, "orderId": order}, ensure_ascii=False) + "\n")
    with FakeOMS(latency=0.01, require_tracking_number=False) as oms:
        with (
            _start(
                CLI,
                *("push", "big.jsonl", "--base-url", oms.url, "--account", "acme", "--json"),
                *("--app-key", APP_KEY, "--app-token", APP_TOKEN),
                cwd=tmp_path,
            ) as process,
            _killed_on_failure(process),
        ):
            _wait_for(lambda: len(oms.updates) >= 20)
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
        accepted = {order for order, _ in oms.updates}
    assert process.returncode == 130, err
    in_failures = {r["orderId"] for r in read_records(tmp_path / "big.failed.jsonl")}
    assert 20 <= len(accepted) < len(orders)
    assert accepted | in_failures == orders
    assert json.loads(out)["interrupted"] is True


def test_python_dash_m_vtex_tracking_is_the_command() -> None:
    """``python -m vtex_tracking`` runs the vtex-tracking command: its version, and a real
    push to the embedded fake server."""
    done = subprocess.run(
        [sys.executable, "-m", "vtex_tracking", "push", str(JSONL), "--fake", "--json"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (30, 30, 0)
    shown = subprocess.run(
        [sys.executable, "-m", "vtex_tracking", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (shown.returncode, shown.stdout.strip()) == (0, f"vtex-tracking {__version__}")
