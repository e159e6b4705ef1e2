"""The shared pace's Lua script on a real Redis: what a call leaves in the account's hash."""

from __future__ import annotations

from typing import Any

from .test_shared_auth_generations import _SCRIPT, KEY, _call


def test_an_account_that_reached_unlimited_keeps_no_rate(direct: Any) -> None:
    """A start that climbs past START_UNTIL makes the account unlimited: its rate is deleted
    from the hash, and the next call (any process's) hears of no rate. Before, the cleared
    field stayed in Redis and was read back: every process leased tokens at the ~4,000/s the
    start had reached, a third of what one process pushes against a fast server."""
    script = direct.register_script(_SCRIPT)
    _call(script, ok=1)
    assert direct.hget(KEY, "st") == "s"
    unlimited = _call(script, ok=5_000)
    assert direct.hget(KEY, "st") == "u"
    assert unlimited[3] == -1  # rate_milli: none
    assert direct.hget(KEY, "rate") is None and direct.hget(KEY, "tat") is None
    assert _call(script)[3] == -1


def test_a_garbage_field_is_deleted(direct: Any) -> None:
    """A field that is not a finite number (or a known state) counts as absent, and is
    deleted unless the call sets it again."""
    script = direct.register_script(_SCRIPT)
    _call(script, ok=1)
    direct.hset(KEY, mapping={"wmax": "nan", "entry": "garbage"})
    _call(script)
    assert direct.hget(KEY, "wmax") is None and direct.hget(KEY, "entry") is None


def test_a_throttle_grace_far_ahead_is_garbage(direct: Any) -> None:
    """``ign`` (throttles ignored, and a resumed start held, until then) is set at most a
    reconnect and a round trip ahead: one a day ahead (a stray write) is dropped, so the
    start climbs on its successes instead of being frozen for a day."""
    script = direct.register_script(_SCRIPT)
    _call(script, ok=1)
    before = float(direct.hget(KEY, "rate"))
    seconds, _ = direct.time()
    direct.hset(KEY, "ign", str(seconds + 86_400))
    climbing = _call(script, ok=10)
    assert climbing[3] > before * 1000, (before, climbing)
    assert float(direct.hget(KEY, "ign")) < seconds + 60
