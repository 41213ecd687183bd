"""Keep exact rate-limit counts away from the edge of limits' in-memory windows."""

from __future__ import annotations

import time


def clear_of_minute_edge(margin_s: float = 5.0) -> None:
    """Wait out the last `margin_s` seconds of the wall-clock minute, if the test starts in them.

    limits' in-memory sliding window is aligned to the clock (windows start on the minute) and floors
    the previous window's weight, so two hits either side of a minute boundary count as one: a test
    expecting its second request in a minute to be refused would see it allowed.
    """
    left = 60.0 - time.time() % 60.0
    if left < margin_s:
        time.sleep(left + 0.05)
