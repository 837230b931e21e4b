"""The token bucket behind --max-rate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triochat.server.ratelimit import TokenBucket


def test_burst_goes_at_once_then_the_rate_applies() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.delay(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay(0.0) == pytest.approx(0.5)
    assert bucket.delay(0.0) == pytest.approx(1.0)


def test_tokens_come_back_with_time_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=2)
    bucket.delay(0.0)
    bucket.delay(0.0)
    assert bucket.delay(100.0) == 0.0
    assert bucket.delay(100.0) == 0.0
    assert bucket.delay(100.0) == pytest.approx(1.0)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)


@given(
    rate=st.floats(min_value=0.5, max_value=100),
    burst=st.integers(min_value=1, max_value=50),
    count=st.integers(min_value=1, max_value=300),
)
def test_messages_sent_at_once_finish_at_the_rate(rate: float, burst: int, count: int) -> None:
    """Waiting as told, n messages sent together end at (n - burst) / rate, never sooner."""
    bucket = TokenBucket(rate, burst)
    now = 0.0
    for _ in range(count):
        now += bucket.delay(now)
    assert now == pytest.approx(max(0, count - burst) / rate, rel=1e-6, abs=1e-9)
