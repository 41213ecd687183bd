"""Which processes hold which TCP sockets of a port, read from /proc (Linux), as `ss -tp` shows them."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

LISTEN, ESTABLISHED = "0A", "01"


def _inodes(port: int, state: str) -> set[str]:
    """Inodes of the sockets on local `port` in `state` (hex code of /proc/net/tcp's `st` column)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == state:
                found.add(fields[9])
    return found


def sockets_by_pid(port: int, state: str, pids: list[int]) -> Counter[int]:
    """How many of the port's sockets in `state` each of `pids` has open."""
    wanted = {f"socket:[{inode}]" for inode in _inodes(port, state)}
    held: Counter[int] = Counter()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:  # the process went away
            continue
        held[pid] = sum(link in wanted for link in links)
    return held


def listening_sockets(port: int) -> int:
    """How many sockets listen on `port`."""
    return len(_inodes(port, LISTEN))
