"""A token bucket: how long a member must wait before its next message is handled.

Pure arithmetic over a clock reading the caller passes in, so it is tested without time.
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` messages per second on average, ``burst`` at once.

    :meth:`delay` takes a token for one message and says how long to wait first. The reader
    sleeps that long before handling the message: TCP backpressure slows the sender, and
    nothing is dropped.
    """

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._updated: float | None = None

    def delay(self, now: float) -> float:
        """Seconds to wait before the message that takes this token may go (0: at once)."""
        if self._updated is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
