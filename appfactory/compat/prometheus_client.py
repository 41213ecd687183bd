"""prometheus_client: a dead worker's counts merged into one archive file per metric type.

In multiprocess mode every worker writes its own `counter_<pid>.db` and `histogram_<pid>.db`, and
nothing removes them when it exits: with workers recycled (`max_requests`) their number, and the cost
of every /metrics scrape, grow without bound (client_python #275, no public way). When the master
reaps a worker, its counts are added into `counter_archive.db` / `histogram_archive.db` through the
library's file format (`mmap_dict.MmapedDict`, undocumented) and its files removed: the files stay
bounded by the live workers, and every count stays exact. On another version the files are left as
they are (the public behaviour), with one WARNING at start.
"""

from __future__ import annotations

import os

from appfactory.compat import private_way

TESTED = "0.26.0"
PRIVATE = private_way("prometheus_client", TESTED)

# Types whose samples add up across processes; live gauges are dropped by mark_process_dead.
_SUMMED = ("counter", "histogram", "summary")


def archive_dead_worker(directory: str, pid: int) -> int:
    """Add the dead `pid`'s counts into the archive files and remove its files; returns how many went."""
    if not PRIVATE:
        return 0
    from prometheus_client.mmap_dict import MmapedDict

    merged = 0
    for kind in _SUMMED:
        dead = os.path.join(directory, f"{kind}_{pid}.db")
        if not os.path.exists(dead):
            continue
        archive = MmapedDict(os.path.join(directory, f"{kind}_archive.db"))
        try:
            for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(dead):
                archive.write_value(key, archive.read_value(key)[0] + value, timestamp)
        finally:
            archive.close()
        os.unlink(dead)
        merged += 1
    stale_all = os.path.join(directory, f"gauge_all_{pid}.db")  # a dead process's "all" gauge is stale
    if os.path.exists(stale_all):
        os.unlink(stale_all)
    return merged
