"""Rates, drop fractions, latency percentiles and throttled problem reports of a node, for its
diagnostics, and the bounds that turn them into a warning.

No rclpy here; times are ``time.monotonic()`` seconds unless said otherwise, so the tests can
drive the classes with their own clock.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np


class RateMeter:
    """Events per second, right at low rates too.

    At high rates the rate is that of the events of the last ``window_s`` seconds. When that
    window holds fewer than ``min_events`` events (a node publishing every 10 s), the newest
    ``min_events`` events are used instead, so a 0.1 Hz output reads 0.1 Hz, not 0. Over the
    events used (``k`` of them, the oldest at ``t_1``, the newest at ``t_k``) the rate is
    ``min((k - 1) / (t_k - t_1), k / (now - t_1))``: the spacing of the events, decaying once the
    next event is overdue (a stopped stream does not keep its old rate). It reads 0 only when
    nothing came for longer than ``horizon_s`` (or before the second event).

    Args:
        window_s: averaging window at high rates.
        min_events: fewest events to compute a rate from (at least 2).
        horizon_s: after this long without an event the rate is 0 and the events are forgotten.
        clock: monotonic time source.
    """

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic, *,
                 min_events: int = 3, horizon_s: float = 60.0) -> None:
        if min_events < 2:
            raise ValueError(f"min_events must be >= 2; got {min_events}")
        self.window_s = float(window_s)
        self.min_events = int(min_events)
        self.horizon_s = max(float(horizon_s), self.window_s)
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
        # Forget everything when nothing came within the horizon, else what is outside the window
        # unless it is one of the newest min_events: what stays is what rate_hz uses.
        times = self._times
        if times and times[-1] < now - self.horizon_s:
            times.clear()
        while len(times) > self.min_events and times[0] < now - self.window_s:
            times.popleft()

    def rate_hz(self) -> float:
        """Events per second now (see the class); 0 with fewer than two recent events."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            times = self._times
            events = len(times)
            if events < 2 or times[-1] <= times[0]:
                return 0.0
            first, last = times[0], times[-1]
            return min((events - 1) / (last - first), events / max(now - first, last - first))


class FractionMeter:
    """The fraction of recent events that were "hits" (frame sets dropped, of those offered).

    Args:
        window_s: events older than this are forgotten.
        min_events: fewer events than this in the window give no fraction (None).
        clock: monotonic time source.
    """

    def __init__(self, window_s: float = 10.0, min_events: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = float(window_s)
        self.min_events = int(min_events)
        self._clock = clock
        self._events: deque[tuple[float, bool]] = deque()
        self._hits = 0
        self._lock = threading.Lock()

    def add(self, hit: bool) -> None:
        with self._lock:
            now = self._clock()
            self._events.append((now, bool(hit)))
            self._hits += int(bool(hit))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window_s:
            self._hits -= int(self._events.popleft()[1])

    def counts(self) -> tuple[int, int]:
        """(hits, events) in the window."""
        with self._lock:
            self._trim(self._clock())
            return self._hits, len(self._events)

    def fraction(self) -> float | None:
        """hits / events in the window, or None with fewer than ``min_events`` events."""
        hits, events = self.counts()
        return hits / events if events >= max(self.min_events, 1) else None


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


def threshold_warnings(latency_p95_ms: float, drop_fraction: float | None, warn_latency_s: float,
                       warn_drop_fraction: float, drop_window_s: float) -> list[str]:
    """Why a node's /diagnostics should say WARN although no input problem is current: its
    latency (95th percentile, ms) above ``warn_latency_s`` (0: never), or the fraction of frame
    sets it dropped recently (None: too few sets to tell) above ``warn_drop_fraction``."""
    warnings = []
    if warn_latency_s > 0 and math.isfinite(latency_p95_ms) and latency_p95_ms > warn_latency_s * 1000.0:
        warnings.append(f"latency p95 {latency_p95_ms:.0f} ms is above warn_latency_s={warn_latency_s:g} s")
    if drop_fraction is not None and drop_fraction > warn_drop_fraction:
        warnings.append(f"{100.0 * drop_fraction:.0f}% of the synchronised frame sets of the last {drop_window_s:g} s "
                        f"were dropped (above warn_drop_fraction={warn_drop_fraction:g}): the node is slower than its "
                        "input (a larger frame_stride spaces the processed frames evenly)")
    return warnings
