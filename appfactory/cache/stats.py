"""Hit and miss counters per prefix: in this process, flushed to Redis in the background when configured."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter

import redis

from appfactory.redis.client import REDIS_ERRORS
from appfactory.resilience.breaker import Breaker

log = logging.getLogger(__name__)

OUTCOMES = ("hit", "stale", "miss", "bypass")
FLUSH_EVERY_S = 1.0


class Counters:
    """Counts outcomes per prefix; with Redis, sums every worker's counts under `{namespace}:stats`."""

    def __init__(
        self, client: redis.Redis | None = None, breaker: Breaker | None = None, key: str = ""
    ) -> None:
        self.client = client
        self.breaker = breaker
        self.key = key
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._flusher_pid = 0

    def add(self, prefix: str, outcome: str) -> None:
        """Count one outcome; the request path never waits for Redis here."""
        with self._lock:
            self._pending[f"{prefix}:{outcome}"] += 1
        if self.client is not None and self._flusher_pid != os.getpid():
            self._start_flusher()

    def flush(self) -> None:
        """Move the pending counts to Redis; they are kept for later when Redis is down."""
        if self.client is None:
            return
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for field, count in pending.items():
                pipe.hincrby(self.key, field, count)
            pipe.execute()
            self.breaker.succeeded()
        except REDIS_ERRORS as exc:
            self.breaker.failed(exc)
            with self._lock:
                self._pending.update(pending)

    def totals(self) -> dict[str, dict[str, int]]:
        """{prefix: {outcome: count}} across workers (Redis) or for this process."""
        raw: Counter[str] = Counter()
        if self.client is not None:
            self.flush()
            raw.update({k.decode(): int(v) for k, v in self.client.hgetall(self.key).items()})
        with self._lock:
            raw.update(self._pending)
        result: dict[str, dict[str, int]] = {}
        for field, count in raw.items():
            prefix, _, outcome = field.rpartition(":")
            result.setdefault(prefix, dict.fromkeys(OUTCOMES, 0))[outcome] = count
        return result

    def reset(self) -> None:
        """Forget every count."""
        with self._lock:
            self._pending.clear()
        if self.client is not None:
            self.client.unlink(self.key)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()  # a forked worker starts its own thread
        threading.Thread(target=self._flush_forever, name="cache-stats", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_EVERY_S)
            if self._pending and self.breaker.allow():
                self.flush()
