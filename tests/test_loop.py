"""The event loop the SDK starts where the loop is its own (``vtex_tracking._loop``): uvloop
when installed (the ``uvloop`` extra, part of ``dev`` off Windows), asyncio's own with
``VTEX_TRACKING_UVLOOP=0`` or the command's ``--no-uvloop``, an error when demanded and absent.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import subprocess
import sys
import textwrap

import pytest

from vtex_tracking import ConfigurationError
from vtex_tracking._loop import ENV_VAR, loop_factory, run
from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .conftest import history_line, write_lines

#: Where uvloop exists at all; elsewhere (Windows) the automatic choice is asyncio's loop.
UVLOOP_PLATFORM = sys.platform != "win32"


@pytest.fixture(autouse=True)
def _automatic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the default: the variable unset."""
    monkeypatch.delenv(ENV_VAR, raising=False)


def _uvloop_installed() -> None:
    if not UVLOOP_PLATFORM:
        return
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pytest.fail('uvloop is not installed: pip install -e ".[dev]" (it holds [uvloop])')


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_the_loop_is_uvloop_when_installed_and_asyncio_when_turned_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """By default ``run`` starts uvloop (asyncio's loop off uvloop's platforms); with
    ``use_uvloop=False`` or ``VTEX_TRACKING_UVLOOP=0`` (or false/no/off) asyncio's own."""
    _uvloop_installed()
    assert run(_loop_module()) == ("uvloop" if UVLOOP_PLATFORM else "asyncio")
    assert run(_loop_module(), use_uvloop=False) == "asyncio"
    for off in ("0", "false", "No", " off "):
        monkeypatch.setenv(ENV_VAR, off)
        assert run(_loop_module()) == "asyncio", off
        assert loop_factory() is None


def test_a_value_that_is_neither_on_nor_off_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``VTEX_TRACKING_UVLOOP=maybe`` is a ConfigurationError naming the variable and the
    values it takes, not a silent guess."""
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ConfigurationError, match=r"VTEX_TRACKING_UVLOOP='maybe': use 0 .* 1"):
        loop_factory()


def test_uvloop_demanded_but_missing_is_an_error_and_automatic_falls_back() -> None:
    """In a process where uvloop cannot be imported: unset, the loop is asyncio's; with
    ``VTEX_TRACKING_UVLOOP=1`` a ConfigurationError tells how to install it."""
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        sys.modules["uvloop"] = None  # as if not installed: its import raises ImportError
        from vtex_tracking import ConfigurationError
        from vtex_tracking._loop import run

        async def kind():
            return type(asyncio.get_running_loop()).__module__

        print(run(kind()))
        os.environ["VTEX_TRACKING_UVLOOP"] = "1"
        try:
            run(kind())
        except ConfigurationError as exc:
            print(exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    automatic, demanded = done.stdout.splitlines()
    assert automatic.startswith("asyncio")
    assert "uvloop was asked for but is not installed" in demanded
    assert 'pip install "vtex-tracking[uvloop]"' in demanded


def test_cli_push_runs_on_uvloop_and_no_uvloop_turns_it_off(
    oms: FakeOMS, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``vtex-tracking push`` says at DEBUG which loop it runs: uvloop by default, asyncio's
    with ``--no-uvloop``; both pushes are confirmed."""
    _uvloop_installed()
    caplog.set_level(logging.DEBUG, logger="vtex_tracking")
    day = write_lines(tmp_path / "day.jsonl", [history_line("o-1"), history_line("o-2")])
    base = ["push", str(day), "--base-url", oms.url, "-q"]
    assert main(base) == 0
    assert main([*base, "--no-uvloop"]) == 0
    loops = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event loop")]
    expected = "event loop: uvloop" if UVLOOP_PLATFORM else "event loop: asyncio"
    assert loops == [expected, "event loop: asyncio"]
    assert len(oms.accepted("o-1", "NF-1")) == 2 and len(oms.accepted("o-2", "NF-1")) == 2


def test_cli_refuses_a_bad_uvloop_setting_before_sending(
    oms: FakeOMS,
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``VTEX_TRACKING_UVLOOP=maybe``: push and check exit 2 with the variable named and send
    nothing; fake-server exits 2 too."""
    monkeypatch.setenv(ENV_VAR, "maybe")
    day = write_lines(tmp_path / "day.jsonl", [history_line("o-1")])
    assert main(["push", str(day), "--base-url", oms.url, "-q"]) == 2
    assert main(["check", str(day), "--base-url", oms.url, "-q"]) == 2
    assert main(["fake-server", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("VTEX_TRACKING_UVLOOP='maybe'") == 3, err
    assert oms.accepted("o-1", "NF-1") == []
