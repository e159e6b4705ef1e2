"""Plain http to another host: refused by default, in the words of whoever asked (the Python
keyword from Python, the option from the command line), and allowed by ``--allow-insecure-http``
against a FakeOMS listening on this machine's own non-loopback address."""

from __future__ import annotations

import json
import pathlib
import socket
from collections.abc import Iterator

import pytest

from vtex_tracking import AsyncTrackingClient, ConfigurationError
from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .conftest import APP_KEY, APP_TOKEN

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "sample-updates.jsonl"


def _own_address() -> str:
    """An address of this machine that is not loopback (the plain http refusal is for those):
    the one its default route would use, else one its host name resolves to."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: picks a route, sends nothing
            address: str = probe.getsockname()[0]
        except OSError:
            address = ""
    if address and not address.startswith("127.") and address != "0.0.0.0":
        return address
    for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
        if not str(sockaddr[0]).startswith("127."):
            return str(sockaddr[0])
    pytest.fail("this machine has no non-loopback IPv4 address to serve plain http from")


@pytest.fixture
def remote_oms(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[FakeOMS]:
    """A FakeOMS on a non-loopback address, its credentials in the environment."""
    monkeypatch.chdir(tmp_path)
    with FakeOMS(host=_own_address()) as server:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", server.app_key)
        monkeypatch.setenv("VTEX_APP_TOKEN", server.app_token)
        for name in ("VTEX_USER_TOKEN", "VTEX_ACCOUNTS", "VTEX_ENVIRONMENT"):
            monkeypatch.delenv(name, raising=False)
        yield server


def test_python_refusal_names_the_keyword() -> None:
    """From Python, the refusal says which keyword opts out, and no command-line option."""
    with pytest.raises(ConfigurationError) as refused:
        AsyncTrackingClient("acme", APP_KEY, APP_TOKEN, base_url="http://192.0.2.7:8080")
    assert "pass allow_insecure_http=True" in str(refused.value)
    assert "--allow-insecure-http" not in str(refused.value)


def test_cli_refusal_names_the_option(
    remote_oms: FakeOMS, capsys: pytest.CaptureFixture[str]
) -> None:
    """From the command line, the same refusal names the option (on stderr, and in --json's
    error object), sends nothing and exits 2."""
    assert main(["push", str(SAMPLE), "--base-url", remote_oms.url, "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["kind"] == "configuration"
    for text in (error["message"], captured.err):
        assert "pass --allow-insecure-http" in text
        assert "allow_insecure_http" not in text
    assert remote_oms.requests == []


def test_cli_option_allows_plain_http(remote_oms: FakeOMS) -> None:
    """With --allow-insecure-http the push goes to the plain http host."""
    argv = ["push", str(SAMPLE), "--base-url", remote_oms.url, "--allow-insecure-http"]
    assert main(argv) == 0
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    assert sum(len(bodies) for bodies in remote_oms.updates.values()) == len(lines) > 0


def test_check_refusal_names_the_option(
    remote_oms: FakeOMS, capsys: pytest.CaptureFixture[str]
) -> None:
    """``check`` takes the same option, and its refusal names it too."""
    assert main(["check", str(SAMPLE), "--base-url", remote_oms.url]) == 2
    assert "pass --allow-insecure-http" in capsys.readouterr().err
    argv = ["check", str(SAMPLE), "--base-url", remote_oms.url, "--allow-insecure-http"]
    assert main([*argv, "--sample", "1"]) in (0, 1)  # reached the server: it was read
    assert [r.method for r in remote_oms.requests] == ["GET"]
