"""Route what is printed to stdout and stderr into logging, one record per line."""

from __future__ import annotations

import io
import logging
import sys
import threading
from typing import Any


class LoggingStream(io.TextIOBase):
    """A text stream that turns every line written to it into a log record."""

    def __init__(self, logger: logging.Logger, level: int, original: Any) -> None:
        super().__init__()
        self.logger = logger
        self.level = level
        self.original = original
        self._pending = threading.local()

    def write(self, text: str) -> int:
        if getattr(self._pending, "busy", False):
            # Logging itself is writing here (its own error report): go straight out, no loop.
            return self.original.write(text)
        buffered = getattr(self._pending, "text", "") + text
        *lines, self._pending.text = buffered.split("\n")
        for line in lines:
            self._log(line)
        return len(text)

    def flush(self) -> None:
        if sys.is_finalizing():  # the interpreter's own last flush: gevent's thread-locals are gone
            return
        rest, self._pending.text = getattr(self._pending, "text", ""), ""
        self._log(rest)

    def _log(self, line: str) -> None:
        if not line.strip():
            return
        self._pending.busy = True
        try:
            self.logger.log(self.level, line.rstrip())
        finally:
            self._pending.busy = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.original.fileno()


def route_std_streams() -> None:
    """Send whatever is printed to stdout or stderr through logging, so it leaves as JSON."""
    if not isinstance(sys.stdout, LoggingStream):
        sys.stdout = LoggingStream(logging.getLogger("stdout"), logging.INFO, sys.stdout)
    if not isinstance(sys.stderr, LoggingStream):
        sys.stderr = LoggingStream(logging.getLogger("stderr"), logging.ERROR, sys.stderr)
