"""Stamp synchronisation and latest-only hand-off between the executor and a worker thread.

No rclpy here: the nodes feed stamps (integer nanoseconds) and opaque messages, and the tests
drive these classes directly.

- :class:`ApproximateTimeSync` matches one message per input whose stamps lie within ``slop``
  of each other, like ``message_filters.ApproximateTimeSynchronizer`` (which is not on PyPI;
  :func:`make_synchronizer` uses the real one when it is importable, e.g. in a ROS
  distribution). A set is emitted when its last member arrives. Everything older than an
  emitted set is dropped (it can only be staler), so queues never grow with load.
- :class:`LatestSlot` hands the newest complete set to the processing thread; a set that is
  replaced before the worker took it is counted as dropped. That is "process the latest
  complete frame set, drop stale ones": the backlog is at most one set, whatever the load.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

NANOSECONDS = 1_000_000_000


@dataclass
class SyncCounters:
    """What the synchroniser did, for diagnostics."""

    received: int = 0  # messages added
    emitted: int = 0  # complete sets
    dropped_stale: int = 0  # messages older than an emitted set, never matched
    dropped_overflow: int = 0  # messages pushed out of a full queue
    time_jumps: int = 0  # an input's stamp went backwards: queues cleared


class ApproximateTimeSync:
    """Matches messages of ``num_inputs`` streams by stamp.

    Args:
        num_inputs: number of streams (e.g. colour, depth, camera_info).
        slop_s: the largest spread of stamps within a set, seconds.
        queue_size: messages kept per input while waiting for partners.
        names: stream names for messages (default "input 0", ...).

    ``add(index, stamp_ns, message)`` returns the matched tuple (in input order) or None.
    Matching: the new message is the pivot; from every other queue the message nearest to it
    in time is taken; the set is complete when all lie within ``slop_s`` of each other.

    A stamp older than the previous one *on the same input* means the clock jumped back (bag
    replay looping, simulation reset): every queue is cleared and matching starts over.
    """

    def __init__(self, num_inputs: int, slop_s: float, queue_size: int = 10, names: Sequence[str] | None = None) -> None:
        if not isinstance(num_inputs, int) or num_inputs < 1:
            raise ValueError(f"num_inputs must be an integer >= 1; got {num_inputs!r}")
        if not slop_s >= 0:
            raise ValueError(f"slop_s must be >= 0; got {slop_s!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an integer >= 1; got {queue_size!r}")
        self.num_inputs = num_inputs
        self.slop_ns = int(round(slop_s * NANOSECONDS))
        self.queue_size = queue_size
        self.names = list(names) if names is not None else [f"input {i}" for i in range(num_inputs)]
        if len(self.names) != num_inputs:
            raise ValueError(f"names has {len(self.names)} entries for {num_inputs} inputs")
        self._queues: list[deque[tuple[int, Any]]] = [deque() for _ in range(num_inputs)]
        self._last_stamp: list[int | None] = [None] * num_inputs
        self._lock = threading.Lock()
        self.counters = SyncCounters()

    def clear(self) -> None:
        with self._lock:
            for queue in self._queues:
                queue.clear()
            self._last_stamp = [None] * self.num_inputs

    def pending(self) -> list[int]:
        """Messages waiting per input."""
        with self._lock:
            return [len(queue) for queue in self._queues]

    def add(self, index: int, stamp_ns: int, message: Any) -> tuple | None:
        if not 0 <= index < self.num_inputs:
            raise IndexError(f"input index {index} out of range [0, {self.num_inputs})")
        with self._lock:
            counters = self.counters
            counters.received += 1
            previous = self._last_stamp[index]
            if previous is not None and stamp_ns < previous:
                counters.time_jumps += 1
                for queue in self._queues:
                    queue.clear()
                self._last_stamp = [None] * self.num_inputs
            self._last_stamp[index] = stamp_ns
            queue = self._queues[index]
            queue.append((stamp_ns, message))
            if len(queue) > self.queue_size:
                queue.popleft()
                counters.dropped_overflow += 1

            chosen: list[tuple[int, Any] | None] = [None] * self.num_inputs
            chosen[index] = (stamp_ns, message)
            for other, other_queue in enumerate(self._queues):
                if other == index:
                    continue
                if not other_queue:
                    return None
                nearest = min(other_queue, key=lambda item: abs(item[0] - stamp_ns))
                chosen[other] = nearest
            stamps = [item[0] for item in chosen]  # type: ignore[index]
            if max(stamps) - min(stamps) > self.slop_ns:
                return None
            # Emit, and drop the matched messages with everything older than them.
            for position, other_queue in enumerate(self._queues):
                matched_stamp = chosen[position][0]  # type: ignore[index]
                while other_queue and other_queue[0][0] <= matched_stamp:
                    stamp, _ = other_queue.popleft()
                    if stamp != matched_stamp:
                        counters.dropped_stale += 1
            counters.emitted += 1
            return tuple(item[1] for item in chosen)  # type: ignore[index]


class MessageFiltersSync:
    """Adapter giving ``message_filters.ApproximateTimeSynchronizer`` the same ``add`` interface
    (used when message_filters is installed, i.e. in a ROS distribution)."""

    def __init__(self, num_inputs: int, slop_s: float, queue_size: int, names: Sequence[str]) -> None:
        import message_filters

        self.num_inputs = num_inputs
        self.names = list(names)
        self.counters = SyncCounters()
        self._filters = [message_filters.SimpleFilter() for _ in range(num_inputs)]
        self._synchronizer = message_filters.ApproximateTimeSynchronizer(self._filters, queue_size, slop_s)
        self._synchronizer.registerCallback(self._on_set)
        self._matched: tuple | None = None
        self._last_stamp: list[int | None] = [None] * num_inputs

    def _on_set(self, *messages) -> None:
        self._matched = messages

    def clear(self) -> None:
        with self._synchronizer.lock:
            for queue in self._synchronizer.queues:
                queue.clear()
        self._last_stamp = [None] * self.num_inputs

    def pending(self) -> list[int]:
        return [len(queue) for queue in self._synchronizer.queues]

    def add(self, index: int, stamp_ns: int, message: Any) -> tuple | None:
        self.counters.received += 1
        previous = self._last_stamp[index]
        if previous is not None and stamp_ns < previous:
            self.counters.time_jumps += 1
            self.clear()
        self._last_stamp[index] = stamp_ns
        self._matched = None
        self._filters[index].signalMessage(message)
        matched, self._matched = self._matched, None
        if matched is not None:
            self.counters.emitted += 1
        return matched


def make_synchronizer(num_inputs: int, slop_s: float, queue_size: int, names: Sequence[str],
                      prefer_message_filters: bool = True):
    """message_filters' synchroniser when importable (and preferred), else :class:`ApproximateTimeSync`.

    Returns (synchroniser, implementation name).
    """
    if prefer_message_filters:
        try:
            import message_filters  # noqa: F401
        except ImportError:
            pass
        else:
            return MessageFiltersSync(num_inputs, slop_s, queue_size, names), "message_filters"
    return ApproximateTimeSync(num_inputs, slop_s, queue_size, names), "egopress_ros.sync"


class LatestSlot:
    """A one-item mailbox: ``put`` replaces what the consumer has not taken yet.

    Attributes:
        put_count: items offered; replaced: items overwritten before being taken (dropped).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self.put_count = 0
        self.replaced = 0

    def put(self, item: Any) -> bool:
        """Offer ``item``; returns True if it replaced an untaken one."""
        with self._condition:
            replaced = self._has_item
            self._item, self._has_item = item, True
            self.put_count += 1
            self.replaced += int(replaced)
            self._condition.notify()
            return replaced

    def take(self, timeout_s: float | None = None) -> Any:
        """The newest item (waiting up to ``timeout_s``), or None on timeout or when closed."""
        with self._condition:
            if not self._has_item and not self._closed:
                self._condition.wait(timeout_s)
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def clear(self) -> bool:
        """Drop an untaken item; returns True if there was one."""
        with self._condition:
            had = self._has_item
            self._item, self._has_item = None, False
            return had

    def close(self) -> None:
        """Wake the consumer; ``take`` returns None from now on unless an item is put."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    def reopen(self) -> None:
        with self._condition:
            self._closed = False


class Worker:
    """A thread that processes the newest item of a :class:`LatestSlot` until stopped.

    Args:
        slot: where items arrive.
        process: called with each item, on the worker thread; exceptions are passed to
            ``on_error`` and the loop goes on.
        on_error: called with (item, exception).
        name: thread name.
    """

    def __init__(self, slot: LatestSlot, process: Callable[[Any], None], on_error: Callable[[Any, BaseException], None],
                 name: str = "egopress-worker") -> None:
        self.slot = slot
        self.process = process
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.busy = False

    def start(self) -> None:
        self.slot.reopen()
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask the loop to end after the current item and wait; returns True if it ended."""
        self._stop.set()
        self.slot.close()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take(timeout_s=0.5)
            if item is None or self._stop.is_set():
                continue
            self.busy = True
            try:
                self.process(item)
            except Exception as error:  # noqa: BLE001 - the node reports it and keeps running
                self.on_error(item, error)
            finally:
                self.busy = False
