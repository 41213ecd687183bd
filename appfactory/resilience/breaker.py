"""A circuit breaker: after `threshold` failures in a row, stop calling a dependency for a back-off."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class Breaker:
    """Open after `threshold` consecutive failures for `retry_after` seconds, then let one call try.

    Redis uses threshold 1 (its calls fail in milliseconds, the first failure is enough); the model
    server a few, so that one unlucky call does not turn every request away.
    """

    def __init__(self, name: str, retry_after: float, threshold: int = 1) -> None:
        self.name = name
        self.retry_after = retry_after
        self.threshold = threshold
        self._failures = 0
        self._open_until = 0.0
        self._opened_at = 0.0
        self._healthy = True
        self._lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        """Whether the breaker is closed: the last calls succeeded, or too few failed to open it."""
        return self._healthy

    def allow(self) -> bool:
        """True when a call may go to the dependency now."""
        if self._healthy:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._open_until:
                return False
            self._open_until = now + self.retry_after  # one trial call per back-off
            return True

    def retry_in(self) -> float:
        """Seconds until the next trial call may go (0 when closed)."""
        return 0.0 if self._healthy else max(0.0, self._open_until - time.monotonic())

    def failed(self, exc: BaseException | None = None) -> None:
        """Record a failure; open the breaker once `threshold` have come in a row."""
        with self._lock:
            self._failures += 1
            if self._healthy and self._failures < self.threshold:
                return
            self._open_until = time.monotonic() + self.retry_after
            if self._healthy:
                self._healthy = False
                self._opened_at = time.monotonic()
                log.warning("%s unavailable, backing off %.1fs: %s", self.name, self.retry_after, exc)

    def succeeded(self) -> None:
        """Record a success and close the breaker; while it is open, only a call that started after
        its back-off (the trial call) closes it: one already in flight when it opened says nothing."""
        if self._healthy and not self._failures:
            return
        with self._lock:
            if not self._healthy and time.monotonic() - self._opened_at < self.retry_after:
                return
            self._failures = 0
            if not self._healthy:
                self._healthy = True
                self._open_until = 0.0
                log.warning("%s available again", self.name)
