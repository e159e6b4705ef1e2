"""The push's send-rate meter: ``progress.send_rate`` is the rate of the last full second,
counted from ``progress.requests`` (the meter keeps no count of its own)."""

from __future__ import annotations

import time

import pytest

from vtex_tracking._progress import PushProgress, RateMeter


def test_send_rate_is_the_rate_of_the_last_full_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    progress = PushProgress()
    meter = RateMeter(progress)

    def request_at(when: float) -> None:
        clock[0] = when
        progress.requests += 1  # as Lane.attempt_started counts it, before the tick
        meter.tick()

    for when in (100.25, 100.5, 100.75):
        request_at(when)
    assert progress.send_rate == 0.0  # no full second yet
    request_at(101.5)
    assert progress.send_rate == 4 / 1.5
    request_at(102.0)
    assert progress.send_rate == 4 / 1.5  # the new second is not over: the last one shows
    request_at(102.5)
    assert progress.send_rate == 2 / 1.0
    assert progress.requests == 6
