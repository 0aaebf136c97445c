"""Rates, latency percentiles and throttled problem reports of a node, for its diagnostics.

No rclpy here; times are ``time.monotonic()`` seconds unless said otherwise, so the tests can
drive the classes with their own clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np


class RateMeter:
    """Events per second over the last ``window_s`` seconds.

    Args:
        window_s: averaging window.
        clock: monotonic time source.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = float(window_s)
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self) -> None:
        with self._lock:
            now = self._clock()
            self._times.append(now)
            self.count += 1
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()

    def rate_hz(self) -> float:
        """Events in the window divided by the span they cover (0 with fewer than two)."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            span = max(now - self._times[0], self._times[-1] - self._times[0])
            return (len(self._times) - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Percentiles of the last ``size`` samples (seconds)."""

    def __init__(self, size: int = 300) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(float(seconds))

    def __len__(self) -> int:
        return len(self._samples)

    def percentiles_ms(self, *quantiles: float) -> list[float]:
        """The given percentiles (0-100) in milliseconds; NaN without samples."""
        with self._lock:
            if not self._samples:
                return [float("nan")] * len(quantiles)
            values = np.percentile(np.fromiter(self._samples, dtype=np.float64), quantiles) * 1000.0
        return [float(v) for v in np.atleast_1d(values)]


@dataclass
class ProblemRecord:
    count: int = 0
    suppressed: int = 0
    last_logged: float = float("-inf")
    last_message: str = ""
    last_seen: float = float("-inf")


class ProblemReporter:
    """Throttled warnings keyed by problem kind ("encoding", "size_mismatch", ...).

    The first occurrence of a kind is logged at once; later ones at most every ``period_s``,
    with the number suppressed meanwhile. Counts per kind and the latest message feed the
    diagnostics. A kind not seen for ``active_s`` is no longer "active".

    Args:
        log: called with each message to log (the node's logger.warning).
        period_s: throttle period per kind.
        active_s: how long a problem counts as current for :meth:`active`.
        clock: monotonic time source.
    """

    def __init__(self, log: Callable[[str], None], period_s: float = 5.0, active_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self.period_s = float(period_s)
        self.active_s = float(active_s)
        self._clock = clock
        self._records: dict[str, ProblemRecord] = {}
        self._lock = threading.Lock()

    def report(self, kind: str, message: str) -> bool:
        """Count a problem; log it unless throttled. Returns True if it was logged."""
        with self._lock:
            now = self._clock()
            record = self._records.setdefault(kind, ProblemRecord())
            record.count += 1
            record.last_message = message
            record.last_seen = now
            if now - record.last_logged < self.period_s:
                record.suppressed += 1
                return False
            suffix = f" ({record.suppressed} more since the last report)" if record.suppressed else ""
            record.suppressed = 0
            record.last_logged = now
        self._log(message + suffix)
        return True

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: record.count for kind, record in self._records.items()}

    def active(self) -> dict[str, str]:
        """Kinds seen within ``active_s``, with their latest message."""
        with self._lock:
            now = self._clock()
            return {kind: record.last_message for kind, record in self._records.items()
                    if now - record.last_seen <= self.active_s}
