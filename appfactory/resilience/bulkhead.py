"""A bulkhead: at most `slots` calls to a slow dependency at once in this process.

It is the admission bound of the model server: a call beyond it waits up to `wait_s` for a slot, then
is refused. Under gevent a waiting call costs a greenlet, so the bound is in the hundreds and protects
the model server and the worker's memory; under gthread every waiting call holds a thread, and the
bound leaves threads for cache HITs, health probes and database reads.
"""

from __future__ import annotations

import threading


class Full(Exception):
    """Every slot stayed taken for the whole wait."""


class Bulkhead:
    """`enter()` before each call (raises Full when no slot frees up within `wait_s`), `leave()` after."""

    def __init__(self, slots: int, wait_s: float) -> None:
        self.slots = slots
        self.wait_s = wait_s
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self.in_flight = 0

    def enter(self) -> None:
        if not self._free.acquire(timeout=self.wait_s):
            raise Full()
        with self._lock:
            self.in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self._free.release()
