"""``vtex-tracking push --accounts`` and ``fake-server --accounts``: many stores from one file,
against FakeOMS over real sockets."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from vtex_tracking import _throttle
from vtex_tracking.cli import main
from vtex_tracking.testing import FakeAccount, FakeOMS

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
STORES = ("acme", "globex", "initech")
#: Secrets read from environment variables named in the accounts file.
SECRETS = {name: f"SECRET-{name.upper()}-TOKEN-5e0f" for name in STORES}
CSV_HEADER = (
    "orderId,invoiceNumber,city,state,description,date,isDelivered,deliveredDate,accountName\n"
)
VARIABLES = ("VTEX_ACCOUNT_NAME", "VTEX_APP_KEY", "VTEX_APP_TOKEN", "VTEX_USER_TOKEN")


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in (*VARIABLES, "VTEX_ACCOUNTS"):
        monkeypatch.delenv(name, raising=False)
    for name, secret in SECRETS.items():
        monkeypatch.setenv(f"{name.upper()}_TOKEN", secret)


@pytest.fixture
def oms() -> Iterator[FakeOMS]:
    """A threaded FakeOMS serving the three stores, each with its secret from the env."""
    stores = {n: FakeAccount(f"vtexappkey-{n}", SECRETS[n]) for n in STORES}
    with FakeOMS(accounts=stores) as server:
        yield server


def _accounts_file(path: pathlib.Path, **extra: str) -> pathlib.Path:
    tables = [
        f'[{n}]\napp_key = "vtexappkey-{n}"\napp_token_env = "{n.upper()}_TOKEN"\n'
        + extra.get(n, "")
        for n in STORES
    ]
    path.write_text("\n".join(tables), encoding="utf-8")
    return path


def _line(order: str, account: str | None, invoice: str = "NF-1") -> str:
    doc: dict[str, Any] = {"orderId": order, "invoiceNumber": invoice}
    if account is not None:
        doc["accountName"] = account
    doc["events"] = [
        {"city": "Recife", "state": "PE", "description": "Objeto postado", "date": "2026-11-02"}
    ]
    return json.dumps(doc, ensure_ascii=False)


def _records(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _summary(out: str) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads(out)  # --json: stdout is that object alone
    return summary


def _store_of(oms: FakeOMS) -> dict[str, str | None]:
    return {r.order_id: r.account for r in oms.requests if r.order_id is not None}


def test_mixed_jsonl_and_csv_go_to_their_stores(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A JSONL and a CSV naming three stores (and lines without a store, which go to
    --account): each update reaches its store with that store's credentials; the summary
    counts per store, in words and in --json."""
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text(
        "\n".join(_line(f"j-{n}", [*STORES, None][n % 4]) for n in range(40)) + "\n",
        encoding="utf-8",
    )
    csv = tmp_path / "mixed.csv"
    rows = [f"c-{n},NF-1,Natal,RN,Postado,2026-11-02,,,{STORES[n % 3]}\n" for n in range(9)]
    # The same ids in two stores are two invoices: two updates, one per store.
    rows += ["twin,NF-9,Natal,RN,Postado,2026-11-02,,,acme\n"]
    rows += ["twin,NF-9,Natal,RN,Postado,2026-11-02,,,globex\n"]
    csv.write_text(CSV_HEADER + "".join(rows), encoding="utf-8")
    accounts = _accounts_file(tmp_path / "stores.toml")
    code = main(
        [
            *("push", str(jsonl), str(csv), "--accounts", str(accounts)),
            *("--account", "initech", "--base-url", oms.url, "--json"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, out
    store_of = _store_of(oms)
    for n in range(40):
        assert store_of[f"j-{n}"] == [*STORES, "initech"][n % 4]
    for n in range(9):
        assert store_of[f"c-{n}"] == STORES[n % 3]
    assert sorted(r.account or "" for r in oms.requests if r.order_id == "twin") == [
        "acme",
        "globex",
    ]
    assert all(r.account in STORES for r in oms.requests)  # every request had a store's key
    summary = _summary(out)
    assert summary["total"] == 51 and summary["succeeded"] == 51
    expected = {"acme": 10 + 3 + 1, "globex": 10 + 3 + 1, "initech": 20 + 3}
    assert {n: s["total"] for n, s in summary["by_account"].items()} == expected
    assert {n: s["requests"] for n, s in summary["by_account"].items()} == expected
    assert "by account (3):" in err
    assert "    initech: 23 updates, 23 succeeded, 0 failed, 23 requests" in err


def test_failures_file_keeps_the_store_and_pushes_again(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A revoked key stops its store only; its updates land in the failures file with their
    accountName, and pushing that file once the key works sends each to the same store."""
    oms.accounts["globex"].revoked = True
    path = tmp_path / "day.jsonl"
    path.write_text(
        "\n".join(_line(f"o-{n}", STORES[n % 3]) for n in range(60)) + "\n", encoding="utf-8"
    )
    accounts = str(_accounts_file(tmp_path / "stores.toml"))
    code = main(["push", str(path), "--accounts", accounts, "--base-url", oms.url, "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    summary = _summary(out)
    assert summary["by_account"]["globex"]["failed"] == 20
    assert summary["by_account"]["globex"]["stopped"] == "auth"
    assert summary["by_account"]["acme"]["succeeded"] == 20
    assert summary["by_account"]["initech"]["succeeded"] == 20
    assert "VTEX kept refusing the credentials of globex" in err
    assert sum(1 for r in oms.requests if r.account == "globex") <= 5
    failed = _records(tmp_path / "day.failed.jsonl")
    assert len(failed) == 20
    assert {r["accountName"] for r in failed} == {"globex"}

    oms.accounts["globex"].revoked = False
    before = len(oms.requests)
    code = main(["push", "day.failed.jsonl", "--accounts", accounts, "--base-url", oms.url])
    capsys.readouterr()
    assert code == 0
    retried = oms.requests[before:]
    assert len(retried) == 20 and {r.account for r in retried} == {"globex"}
    assert {r.order_id for r in retried} == {f"o-{n}" for n in range(1, 60, 3)}


def test_without_a_default_store_lines_must_name_one(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --accounts and no --account: a line without accountName is that line's failure
    (named, kept in the failures file, sent nowhere); so is an unknown store. The rest go."""
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join([_line("named", "acme"), _line("anonymous", None), _line("lost", "umbrella")])
        + "\n",
        encoding="utf-8",
    )
    accounts = str(_accounts_file(tmp_path / "stores.toml"))
    code = main(["push", str(path), "--accounts", accounts, "--base-url", oms.url, "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert [r.order_id for r in oms.requests] == ["named"]
    assert "in.jsonl:2: accountName: missing, and there is no default account" in captured.err
    assert "no credentials for account 'umbrella'" in captured.err
    failed = {r["orderId"]: r for r in _records(tmp_path / "in.failed.jsonl")}
    assert set(failed) == {"anonymous", "lost"}
    assert "accountName" not in failed["anonymous"]
    assert failed["lost"]["accountName"] == "umbrella"
    summary = _summary(captured.out)
    assert summary["by_account"]["umbrella"]["failed"] == 1
    assert summary["by_account"]["acme"]["succeeded"] == 1


def test_dry_run_checks_each_lines_store_as_a_push_would(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run --accounts: a line naming an unknown store, and a line naming none when there
    is no default store, are failures (file:line, failures file, summary, exit 1), as a push
    would make them; nothing is sent."""
    path = tmp_path / "in.jsonl"
    lines = [_line("named", "acme"), _line("anonymous", None), _line("lost", "acmee")]
    path.write_text("\n".join([*lines, _line("also", "initech")]) + "\n", encoding="utf-8")
    accounts = str(_accounts_file(tmp_path / "stores.toml"))
    code = main(["push", str(path), "--accounts", accounts, "--dry-run", "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert oms.requests == []
    assert f"{path}:2: accountName: missing, and there is no default account" in captured.err
    assert (
        f"{path}:3: accountName: no credentials for account 'acmee'; did you mean 'acme'?"
        in captured.err
    )
    summary = _summary(captured.out)
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (4, 2, 2)
    assert summary["by_outcome"] == {"invalid": 2, "valid": 2}
    assert {n: s["total"] for n, s in summary["by_account"].items()} == {
        "acme": 1,
        "acmee": 1,
        "initech": 1,
    }
    failed = _records(tmp_path / "in.failed.jsonl")
    assert [r["orderId"] for r in failed] == ["anonymous", "lost"]
    assert [r["source"] for r in failed] == [f"{path}:2", f"{path}:3"]


def test_dry_run_with_a_default_store_accepts_lines_without_one(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run --accounts --account initech: a line without accountName goes to initech,
    so it is valid; the file is checked without any server."""
    path = tmp_path / "in.jsonl"
    path.write_text(_line("anonymous", None) + "\n" + _line("g", "globex") + "\n", "utf-8")
    accounts = str(_accounts_file(tmp_path / "stores.toml"))
    code = main(
        ["push", str(path), "--accounts", accounts, "--account", "initech", "--dry-run"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Dry run: 2 updates read" in out and "2 valid, 0 invalid" in out
    assert "    initech: 1 updates" in out and "    globex: 1 updates" in out


def test_dry_run_with_a_bad_accounts_file_exits_2_as_a_push_would(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run loads the accounts file as a push does: a variable it names but that is
    unset is exit 2 with file:line, as JSON with --json; no secret in the output."""
    accounts = _accounts_file(tmp_path / "stores.toml")
    text = accounts.read_text(encoding="utf-8").replace("GLOBEX_TOKEN", "GLOBEX_TOKN")
    accounts.write_text(text, encoding="utf-8")
    path = tmp_path / "in.jsonl"
    path.write_text(_line("a", "acme") + "\n", encoding="utf-8")
    code = main(["push", str(path), "--accounts", str(accounts), "--dry-run", "--json"])
    captured = capsys.readouterr()
    assert code == 2
    error = json.loads(captured.out)["error"]
    assert error["kind"] == "configuration"
    assert f"{accounts}:7: globex: app_token_env: the environment variable GLOBEX_TOKN" in (
        error["message"]
    )
    for secret in SECRETS.values():
        assert secret not in captured.out + captured.err


def test_stores_from_environment_variables(
    oms: FakeOMS, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --accounts, VTEX_ACCOUNTS and VTEX_<NAME>_* describe the stores."""
    monkeypatch.setenv("VTEX_ACCOUNTS", "acme,globex")
    for name in ("acme", "globex"):
        monkeypatch.setenv(f"VTEX_{name.upper()}_APP_KEY", f"vtexappkey-{name}")
        monkeypatch.setenv(f"VTEX_{name.upper()}_APP_TOKEN", SECRETS[name])
    path = tmp_path / "in.jsonl"
    path.write_text(_line("a", "acme") + "\n" + _line("g", "globex") + "\n", encoding="utf-8")
    assert main(["push", str(path), "--base-url", oms.url]) == 0
    assert _store_of(oms) == {"a": "acme", "g": "globex"}


def test_a_bad_accounts_file_exits_2_naming_the_line(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file referring to an unset variable: exit 2 before anything is read or sent, with
    file:line, account and key."""
    accounts = _accounts_file(tmp_path / "stores.toml")
    text = accounts.read_text(encoding="utf-8").replace("GLOBEX_TOKEN", "GLOBEX_TOKN")
    accounts.write_text(text, encoding="utf-8")
    path = tmp_path / "in.jsonl"
    path.write_text(_line("a", "acme") + "\n", encoding="utf-8")
    assert main(["push", str(path), "--accounts", str(accounts)]) == 2
    err = capsys.readouterr().err
    assert f"{accounts}:7: globex: app_token_env: the environment variable GLOBEX_TOKN" in err


def test_fake_with_accounts_is_a_demo_without_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--fake --accounts pushes the example hub files to one fake store per account, with no
    credentials at all (the file's *_env variables unset), honouring the file's limits."""
    for name in STORES:
        monkeypatch.delenv(f"{name.upper()}_TOKEN")
    code = main(
        [
            *("push", "--fake", "--accounts", str(EXAMPLES / "hub-stores.toml"), "--json"),
            *(str(EXAMPLES / "hub-updates.jsonl"), str(EXAMPLES / "hub-updates.csv")),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "pushing to 3 fake stores" in captured.err
    summary = _summary(captured.out)
    by_account = summary["by_account"]
    assert set(by_account) == set(STORES)
    assert sum(s["succeeded"] for s in by_account.values()) == summary["total"] == 50
    assert by_account["initech"]["throttled"] == 0  # paced at its rate_limit, never refused


def test_secrets_from_env_references_appear_nowhere(
    oms: FakeOMS, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stores' tokens (read from env variables the file names) are in no output or file,
    verbose or not, with failures (a revoked store) and a --json summary."""
    oms.accounts["acme"].revoked = True
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join(_line(f"o-{n}", STORES[n % 3]) for n in range(12)) + "\n", encoding="utf-8"
    )
    accounts = str(_accounts_file(tmp_path / "stores.toml"))
    code = main(
        ["push", str(path), "--accounts", accounts, "--base-url", oms.url, "--json", "-v"]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert any(r.account == "globex" for r in oms.requests)  # the secrets were really used
    files = "".join(p.read_text(encoding="utf-8") for p in tmp_path.iterdir() if p.is_file())
    for secret in SECRETS.values():
        assert secret not in captured.out + captured.err + files


def _cli(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vtex_tracking.cli", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def test_fake_server_serves_the_stores_of_an_accounts_file(tmp_path: pathlib.Path) -> None:
    """fake-server --accounts serves each store with the credentials push --accounts sends
    (read from the same env variables), applies a store's rate_limit, never prints a secret,
    and counts requests per store on Ctrl-C."""
    accounts = _accounts_file(tmp_path / "stores.toml", initech="rate_limit = 100\n")
    process = _cli(
        "fake-server", "--port", "0", "--accounts", str(accounts), env=dict(os.environ)
    )
    assert process.stdout is not None
    url = process.stdout.readline().rsplit(" ", 1)[1].strip()
    banner = process.stdout.readline()
    assert "serves the 3 stores" in banner
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join(_line(f"o-{n}", STORES[n % 3]) for n in range(30)) + "\n", encoding="utf-8"
    )
    code = main(["push", str(path), "--accounts", str(accounts), "--base-url", url])
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    assert code == 0
    assert process.returncode == 0, err
    assert "Requests per store: acme: 10, globex: 10, initech: 10." in out
    for secret in SECRETS.values():
        assert secret not in banner + out + err


def test_fake_server_refuses_a_store_with_a_user_token(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """FakeOMS tells stores apart by key and token: a user-token store is refused by name."""
    monkeypatch.setenv("HUB_USER_TOKEN", "user-token")
    accounts = tmp_path / "stores.toml"
    accounts.write_text('[hub]\nuser_token_env = "HUB_USER_TOKEN"\n', encoding="utf-8")
    assert main(["fake-server", "--port", "0", "--accounts", str(accounts)]) == 2
    assert f"{accounts}: hub: the fake server tells stores apart" in capsys.readouterr().err


def test_requests_per_store_count_in_the_summary_matches_the_server(
    oms: FakeOMS,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The per-store request and throttle counts are the server's: a store limited to 20/s
    with a burst of 2 gets 429s, counted against it alone."""
    # New accounts start at 50 req/s: over the limit, so initech's first requests draw 429s,
    # but not at the suite's fast start (1,000 req/s), which is also the floor of the pace's
    # measure after a first 429: there, a fast machine spent every update's attempts on 429s
    # within the measure's 0.2 s, and the push failed.
    monkeypatch.setattr(_throttle, "START_RATE", 50.0)
    oms.accounts["initech"].rate_limit = 20
    oms.accounts["initech"].burst = 2
    oms.retry_after = "0"
    path = tmp_path / "in.jsonl"
    path.write_text(
        "\n".join(_line(f"o-{n}", STORES[n % 3]) for n in range(60)) + "\n", encoding="utf-8"
    )
    accounts = str(_accounts_file(tmp_path / "stores.toml"))
    code = main(
        ["push", str(path), "--accounts", accounts, "--base-url", oms.url, "--json",
         "--max-attempts", "10"]
    )  # fmt: skip
    summary = _summary(capsys.readouterr().out)
    assert code == 0
    served = Counter(r.account for r in oms.requests)
    for name in STORES:
        assert summary["by_account"][name]["requests"] == served[name]
    assert summary["by_account"]["initech"]["throttled"] > 0
    assert summary["by_account"]["acme"]["throttled"] == 0


def test_fake_with_stores_from_environment_variables(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """--fake with VTEX_ACCOUNTS and none of the stores' variables: one fake store per name."""
    monkeypatch.setenv("VTEX_ACCOUNTS", "acme, globex")
    path = tmp_path / "in.jsonl"
    path.write_text(_line("a", "acme") + "\n" + _line("g", "globex") + "\n", encoding="utf-8")
    assert main(["push", str(path), "--fake", "--json"]) == 0
    summary = _summary(capsys.readouterr().out)
    assert {n: s["succeeded"] for n, s in summary["by_account"].items()} == {"acme": 1, "globex": 1}
