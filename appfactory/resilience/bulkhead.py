"""A bulkhead: at most `slots` calls to a slow dependency at once in this process.

Under gthread every waiting upstream call holds one of the worker's threads; unbounded, a burst of
slow model calls holds them all and cache HITs and health probes queue behind it. The bound leaves
threads for everything else; a call beyond it waits `wait_s` for a slot, then is refused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Full(Exception):
    """Every slot stayed taken for the whole wait."""


class Bulkhead:
    """`with bulkhead.slot():` around each call; raises Full when none frees up within `wait_s`."""

    def __init__(self, slots: int, wait_s: float) -> None:
        self.slots = slots
        self.wait_s = wait_s
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._free.acquire(timeout=self.wait_s):
            raise Full()
        with self._lock:
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1
            self._free.release()
