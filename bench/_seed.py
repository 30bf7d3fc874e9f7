"""The seed lesson's own designs, written here the seed's way as baselines for the experiments.

Each class follows the design of the seed's cell it names (same data structures, same work per
call), in the project's style. The ring and the message queue live in :mod:`lowlat.pipeline.seed`
(the pipeline's seed backend runs on them) and are re-exported here.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

# The seed's ring and message queue are the pipeline's seed backend's, written once.
from lowlat.pipeline.seed import SeedMessageQueue, SeedRingBuffer  # noqa: F401  (re-exported)


@dataclass
class OrderMessage:
    """The seed's order message (In [8]): six fields, what a pool saves constructing."""

    order_id: int = 0
    symbol: str = ""
    price: float = 0.0
    quantity: int = 0
    side: str = "BUY"
    timestamp: int = 0


class SeedListTracker:
    """The seed's tracker (In [3]): every sample in a list, sorted for percentiles.

    Memory grows with the sample count (a list slot plus an int object per sample); percentiles
    cost a sort of everything recorded.
    """

    def __init__(self, name: str, warmup_iterations: int = 100) -> None:
        self.name = name
        self.warmup_iterations = warmup_iterations
        self.latencies: list[int] = []
        self._seen = 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        start = time.perf_counter_ns()
        yield
        self.record(time.perf_counter_ns() - start)

    def record(self, latency_ns: int) -> None:
        self._seen += 1
        if self._seen > self.warmup_iterations:
            self.latencies.append(latency_ns)

    def get_statistics(self) -> dict[str, Any]:
        if not self.latencies:
            return {}
        ordered = np.sort(np.array(self.latencies, dtype=np.int64))
        stats: dict[str, Any] = {"name": self.name, "count": len(ordered), "mean_ns": float(np.mean(ordered)),
                                 "min_ns": int(ordered[0]), "max_ns": int(ordered[-1])}
        for point in (50, 90, 99, 99.9):
            stats[f"p{point:g}_ns".replace(".", "")] = float(np.percentile(ordered, point))
        return stats

    def memory_bytes(self) -> int:
        """Bytes held for the samples: the list and its int objects."""
        return sys.getsizeof(self.latencies) + sum(map(sys.getsizeof, self.latencies))


class SeedObjectPool:
    """The seed's ``PreallocatedObjectPool`` (In [8]): a deque of objects, a generator ``borrow()``."""

    def __init__(self, factory: Callable[[], Any], initial_size: int = 1000) -> None:
        self.factory = factory
        self.pool = deque(factory() for _ in range(initial_size))
        self.allocated = 0

    def acquire(self) -> Any:
        if self.pool:
            return self.pool.pop()
        self.allocated += 1
        return self.factory()

    def release(self, obj: Any) -> None:
        self.pool.append(obj)

    @contextmanager
    def borrow(self) -> Iterator[Any]:
        obj = self.acquire()
        try:
            yield obj
        finally:
            self.release(obj)


class SeedPriorityQueue:
    """The seed's ``PriorityMessageQueue`` (section 6): ``heapq`` of (priority, seq, ts, message)."""

    def __init__(self) -> None:
        self.heap: list[tuple] = []
        self.sequence = 0

    def enqueue(self, priority: int, message: Any) -> None:
        heapq.heappush(self.heap, (priority, self.sequence, time.perf_counter_ns(), message))
        self.sequence += 1

    def dequeue(self) -> tuple | None:
        if not self.heap:
            return None
        priority, _seq, enqueued, message = heapq.heappop(self.heap)
        return priority, message, time.perf_counter_ns() - enqueued

    def __len__(self) -> int:
        return len(self.heap)
