"""ARM's subscription request limits, as token buckets.

ARM grants a burst per subscription and refills it at a steady rate
(writes: 200 burst, 10/s; reads: 250 burst, 25/s by default) and answers
429 with Retry-After beyond it. The emulator keeps one bucket per
subscription and kind so fan-out code meets the same wall as in Azure.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketConfig:
    burst: int
    refill_per_second: float


@dataclass(frozen=True)
class ThrottleConfig:
    writes: BucketConfig = BucketConfig(200, 10.0)
    reads: BucketConfig = BucketConfig(250, 25.0)


class TokenBucket:
    def __init__(self, config: BucketConfig, now: float) -> None:
        self._config = config
        self._tokens = float(config.burst)
        self._stamp = now

    def take(self, now: float) -> tuple[bool, int, float]:
        """Take one token: (allowed, tokens remaining, seconds until the next token)."""
        self._tokens = min(self._config.burst, self._tokens + (now - self._stamp) * self._config.refill_per_second)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True, int(self._tokens), 0.0
        return False, 0, (1 - self._tokens) / self._config.refill_per_second


class Throttle:
    def __init__(self, config: ThrottleConfig | None = None) -> None:
        self.config = config or ThrottleConfig()
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def take(self, subscription: str, kind: str) -> tuple[bool, int, int]:
        """Return (allowed, remaining, retry-after seconds) for one request of ``kind`` (reads|writes)."""
        now = time.monotonic()
        with self._lock:
            key = (subscription.lower(), kind)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(getattr(self.config, kind), now)
            allowed, remaining, wait = bucket.take(now)
        return allowed, remaining, max(1, math.ceil(wait)) if not allowed else 0
