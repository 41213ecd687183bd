"""A pool of this process that stays empty for its whole wait.

Too much at once here is not a failure of the dependency: no breaker opens, and only the request that
waited is answered, 503 `busy` with Retry-After (appfactory/web/errors.py).
"""

from __future__ import annotations

import queue


class PoolExhausted(Exception):
    """No connection of `pool` came free within the wait."""

    def __init__(self, pool: str) -> None:
        super().__init__(f"every {pool} connection of this worker stayed busy")
        self.pool = pool


def waiting_queue(pool: str) -> type[queue.LifoQueue]:
    """A queue class for a blocking connection pool (redis-py's `queue_class`): running dry within the
    pool's wait raises PoolExhausted instead of the dependency's own connection error."""

    class WaitingQueue(queue.LifoQueue):
        def get(self, block: bool = True, timeout: float | None = None):
            try:
                return super().get(block, timeout)
            except queue.Empty:
                raise PoolExhausted(pool) from None

    return WaitingQueue
