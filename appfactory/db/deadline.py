"""A deadline on every PostgreSQL call, enforced by the client whatever the server does.

A frozen server (its processes stopped, the kernel still acknowledging) never answers and never
closes: a query on an open connection would wait for TCP keepalives, 25–40 s. psycopg2's wait
callback (its public hook for cooperative I/O) lets every connect and every statement wait on the
socket with `select` bounded by DB_TIMEOUT_S; past it the connection's socket is shut down,
SQLAlchemy is told it is a disconnect (so the pool drops it), and the request answers 503
`database_unavailable`.
"""

from __future__ import annotations

import os
import select
import socket
import time

import psycopg2
from psycopg2 import extensions


class DeadlineExceeded(psycopg2.OperationalError):
    """The database did not answer within DB_TIMEOUT_S."""


_deadline_s = 5.0


def enforce(seconds: float) -> None:
    """Bound every psycopg2 wait of this process by `seconds` (one setting per process)."""
    global _deadline_s
    _deadline_s = seconds
    extensions.set_wait_callback(_wait)


def _wait(conn) -> None:
    deadline = time.monotonic() + _deadline_s
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _shut(conn)  # its socket may hold half a reply: never hand it to another request
            raise DeadlineExceeded(f"the database did not answer within {_deadline_s:g} s")
        if state == extensions.POLL_READ:
            select.select([conn.fileno()], [], [], remaining)
        elif state == extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], remaining)
        else:
            raise psycopg2.OperationalError(f"bad poll state {state}")


def _shut(conn) -> None:
    """Shut the connection's socket down, leaving its descriptor to libpq.

    `conn.close()` here would wait for the frozen server's reply itself; after a shutdown every later
    read or write on the socket fails at once, so SQLAlchemy's invalidation closes it without waiting.
    """
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()
