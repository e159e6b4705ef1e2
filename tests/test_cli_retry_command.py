"""The retry command the summary prints: run as printed (split as a shell would), it sends the
failed lines to the same stores, the same way; it never carries a secret, and says which
environment variables it needs instead."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from vtex_tracking.cli import build_parser, main
from vtex_tracking.cli._retry import retry_command
from vtex_tracking.testing import FakeAccount, FakeOMS

from .conftest import read_records
from .test_cli_output import CREDENTIAL_VARIABLES

STORES = ("acme", "globex")
SECRETS = {name: f"SECRET-{name.upper()}-TOKEN-77c1" for name in STORES}
VARIABLES = (*CREDENTIAL_VARIABLES, "VTEX_SHARED_PACE")
_RETRY = re.compile(r"retry them with: (.+)$", re.MULTILINE)
_NEEDS = re.compile(r"^  the retry needs (.+)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _line(order: str, account: str | None = None) -> str:
    doc: dict[str, Any] = {"orderId": order, "invoiceNumber": "NF-1"}
    if account is not None:
        doc["accountName"] = account
    doc["events"] = [
        {"city": "Recife", "state": "PE", "description": "Objeto postado", "date": "2026-11-02"}
    ]
    return json.dumps(doc)


def _printed(out: str) -> tuple[list[str], str | None]:
    """The retry command of a summary, split as a shell splits it, and what it needs."""
    found = _RETRY.search(out)
    assert found is not None, out
    argv = shlex.split(found[1])
    assert argv[:2] == ["vtex-tracking", "push"], argv
    needs = _NEEDS.search(out)
    return argv, needs[1] if needs else None


def _run_as_printed(argv: list[str], env: dict[str, str] | None = None) -> int:
    """The printed command in a process of its own (``vtex-tracking`` is this module)."""
    done = subprocess.run(
        [sys.executable, "-m", "vtex_tracking.cli", *argv[1:]],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    return done.returncode


def _sent(oms: FakeOMS) -> list[tuple[str | None, str | None]]:
    return sorted((r.account, r.order_id) for r in oms.requests if r.method == "PUT")


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Iterator[FakeOMS]:
    """Two stores at one FakeOMS, their secrets in variables that stores.toml names."""
    tables = [
        f'[{n}]\napp_key = "vtexappkey-{n}"\napp_token_env = "{n.upper()}_TOKEN"\n' for n in STORES
    ]
    (tmp_path / "stores.toml").write_text("\n".join(tables), encoding="utf-8")
    for name, secret in SECRETS.items():
        monkeypatch.setenv(f"{name.upper()}_TOKEN", secret)
    accounts = {n: FakeAccount(f"vtexappkey-{n}", SECRETS[n]) for n in STORES}
    with FakeOMS(accounts=accounts) as server:
        yield server


def test_retry_of_a_many_stores_push_reaches_the_same_stores(
    hub: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A push with --accounts and a fake's --base-url: the printed retry carries both (and the
    other options of how to send), and run as printed it sends exactly the failed lines, each
    to its store, where before it failed every line for want of credentials."""
    lines = [_line(f"o-{n}", STORES[n % 2]) for n in range(6)]
    (tmp_path / "dia de hoje.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    hub.fail_next(3, 404)
    options = ["--accounts", "stores.toml", "--base-url", hub.url, "--rate-limit", "200"]
    argv = ["push", "dia de hoje.jsonl", *options, "--concurrency", "1", "--max-attempts", "2"]
    assert main(argv) == 1
    out = capsys.readouterr().out
    printed, needs = _printed(out)
    assert printed[2] == "dia de hoje.failed.jsonl"  # quoted, so the space survives
    for option in (*options, "--concurrency", "1", "--max-attempts", "2"):
        assert option in printed
    assert needs is not None and "stores.toml" in needs
    for secret in SECRETS.values():
        assert secret not in out
    failed = read_records(tmp_path / "dia de hoje.failed.jsonl")
    assert len(failed) == 3
    hub.reset()
    assert _run_as_printed(printed) == 0
    assert _sent(hub) == sorted((r["accountName"], r["orderId"]) for r in failed)


def test_retry_of_credentials_given_as_options_names_their_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Credentials passed as options are not printed: the retry says which variables to set
    to them, and with those set, the printed command sends the failed line."""
    with FakeOMS(app_key="vtexappkey-PRIVATE-KEY", app_token="PRIVATE-TOKEN-9") as oms:
        pathlib.Path("day.jsonl").write_text(_line("o-1") + "\n" + _line("o-2") + "\n", "utf-8")
        oms.fail_next(1, 404)
        secrets = ["--app-key", oms.app_key, "--app-token", oms.app_token]
        argv = ["push", "day.jsonl", "--account", "acme", *secrets, "--base-url", oms.url]
        assert main([*argv, "--concurrency", "1"]) == 1
        out = capsys.readouterr().out
        printed, needs = _printed(out)
        assert "PRIVATE" not in out
        assert printed[3:] == ["--account", "acme", "--base-url", oms.url, "--concurrency", "1"]
        assert needs == (
            "VTEX_APP_KEY, VTEX_APP_TOKEN set to this run's --app-key, --app-token"
            " (secrets are not printed)"
        )
        oms.reset()
        env = {"VTEX_APP_KEY": oms.app_key, "VTEX_APP_TOKEN": oms.app_token}
        assert _run_as_printed(printed, env) == 0
        assert _sent(oms) == [(None, "o-1")]


def test_retry_needs_the_variables_this_run_read(
    oms: FakeOMS, capsys: pytest.CaptureFixture[str]
) -> None:
    """Store and credentials from the environment: the command stays short and the summary
    names the variables (never their values); --json carries the same command."""
    pathlib.Path("day.jsonl").write_text(_line("o-1") + "\n", "utf-8")
    oms.fail_next(1, 404)
    assert main(["push", "day.jsonl", "--base-url", oms.url, "--json"]) == 1
    captured = capsys.readouterr()
    printed, needs = _printed(captured.err)
    assert printed == ["vtex-tracking", "push", "day.failed.jsonl", "--base-url", oms.url]
    assert json.loads(captured.out)["retry_command"] == shlex.join(printed)
    assert needs == "VTEX_ACCOUNT_NAME, VTEX_APP_KEY, VTEX_APP_TOKEN set as for this run"


def test_retry_never_prints_a_password_of_a_url() -> None:
    """A --shared-pace or --skip-unchanged URL with a password is named, not printed."""
    args = build_parser().parse_args(
        [
            *("push", "day.jsonl", "--fake", "--shared-pace", "redis://:hunter2@cache:6379/0"),
            *("--skip-unchanged", "redis://user:hunter2@cache/1", "--time-zone", "America/Manaus"),
        ]
    )
    command, needs = retry_command(args, "day.failed.jsonl")
    assert command == ("vtex-tracking push day.failed.jsonl --fake --time-zone America/Manaus")
    assert needs is not None and "hunter2" not in needs
    assert "--shared-pace as given" in needs and "--skip-unchanged as given" in needs
