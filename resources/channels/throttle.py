"""The per-channel send rate the delivery engine enforces: a token bucket sized to the provider's quota."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """Per-channel send rate: `rate` tokens a second, at most `burst` saved up; `take()` sleeps until one is free."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ):
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.clock, self.sleep = float(burst), clock, sleep
        self.last = clock()
        self.waited_s = 0.0
        self.lock = threading.Lock()  # several sender threads share one channel's bucket

    def take(self) -> None:
        """Take one token, sleeping first when none is saved up."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            wait = (1.0 - self.tokens) / self.rate
            self.sleep(wait)
            self.waited_s += wait
            self.tokens = 0.0
            self.last = self.clock()
        else:
            self.tokens -= 1.0
