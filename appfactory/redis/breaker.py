"""A circuit breaker: after a failure, stop calling a dependency for a short back-off."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)


class Breaker:
    """Open after a failure for `retry_after` seconds, then let one call try again."""

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        self._open_until = 0.0
        self._healthy = True
        self._lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        """Whether the last call succeeded."""
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

    def failed(self, exc: BaseException | None = None) -> None:
        """Record a failure and open the breaker."""
        with self._lock:
            self._open_until = time.monotonic() + self.retry_after
            if self._healthy:
                self._healthy = False
                log.warning("%s unavailable, backing off %.1fs: %s", self.name, self.retry_after, exc)

    def succeeded(self) -> None:
        """Record a success and close the breaker."""
        if self._healthy:
            return
        with self._lock:
            if not self._healthy:
                self._healthy = True
                self._open_until = 0.0
                log.warning("%s available again", self.name)
