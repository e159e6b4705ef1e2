"""``vtex-tracking push --shared-pace URL``: pushes from several machines keep to one account
pace, through a real redis-server."""

from __future__ import annotations

import json
import pathlib

import pytest
import redis

from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

from .redis_server import RedisServer

JSONL = pathlib.Path(__file__).resolve().parents[1] / "examples" / "sample-updates.jsonl"


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test in its own directory, without VTEX credentials or a shared pace set."""
    monkeypatch.chdir(tmp_path)
    for name in ("VTEX_ACCOUNT_NAME", "VTEX_APP_KEY", "VTEX_APP_TOKEN", "VTEX_SHARED_PACE"):
        monkeypatch.delenv(name, raising=False)


def _push(oms: FakeOMS, *options: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    status = main(
        ["push", str(JSONL), "--json", "-q", "--account", "acme", "--app-key", oms.app_key,
         "--app-token", oms.app_token, "--base-url", oms.url, *options]
    )  # fmt: skip
    return status, json.loads(capsys.readouterr().out)


def test_push_with_shared_pace_keeps_the_accounts_state_in_redis(
    redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--shared-pace URL: every line confirmed, and the account's pace is one hash in Redis."""
    with FakeOMS() as oms:
        status, summary = _push(oms, "--shared-pace", redis_server.url, capsys=capsys)
    assert status == 0 and summary["failed"] == 0 and summary["succeeded"] > 0
    direct = redis.Redis.from_url(redis_server.url)
    try:
        keys = [k.decode() for k in direct.keys("*")]
        assert keys == ["vtex-tracking:pace:acme.vtexcommercestable"]
    finally:
        direct.close()


def test_the_environment_variable_sets_the_shared_pace(
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """VTEX_SHARED_PACE does what --shared-pace does."""
    monkeypatch.setenv("VTEX_SHARED_PACE", redis_server.url)
    with FakeOMS() as oms:
        status, _ = _push(oms, capsys=capsys)
    direct = redis.Redis.from_url(redis_server.url)
    try:
        assert status == 0 and direct.keys("vtex-tracking:pace:*")
    finally:
        direct.close()


def test_a_url_that_is_not_redis_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--shared-pace http://... exits 2 with a JSON error naming the option, sending nothing."""
    with FakeOMS() as oms:
        status, summary = _push(oms, "--shared-pace", "http://user:pw@host", capsys=capsys)
        assert oms.requests == []
    assert status == 2
    assert "shared_pace" in summary["error"]["message"]
    assert "pw@" not in summary["error"]["message"]
