"""redis-py: the rate limiter's script on a connection that stays with the calling thread.

redis-py checks a connection out of its pool for every command: a lock, a readiness poll (one system
call), connection-count bookkeeping and an event on release. The limiter's script runs on every API
request, so each thread takes one connection from the pool once and keeps it, reading the
connection's socket (`Connection._sock`, private) to check it and to let the kernel bound its waits.
The public way is redis-py's own `Script`, a pool checkout per call (docs/compat.md), and the only way
under gevent: there every request is a greenlet of its own, so a connection pinned "per thread" would be
one per request, never returned, and the kernel's timeouts do not bound a non-blocking socket's waits.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.connection import Connection
from redis.exceptions import NoScriptError, ResponseError

from appfactory.compat import private_way

TESTED = "8.1.0"
PRIVATE = private_way("redis", TESTED)

# A pinned connection unused for this long is checked before its next call (one poll of its socket).
CHECK_IDLE_AFTER_S = 1.0


def script(client: redis.Redis, source: str) -> Callable[[list[str], list[Any]], Any]:
    """`source` as a callable `(keys, args) -> reply`: on kept connections (pinned per thread, or
    under gevent a few shared by the greenlets), or redis-py's Script."""
    if PRIVATE:
        return KeptScript(client, source) if cooperative() else PinnedScript(client, source)
    registered = client.register_script(source)
    return lambda keys, args: registered(keys=keys, args=args)


def cooperative() -> bool:
    """Whether gevent has patched threading (the gevent worker): each request runs in a greenlet."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def _run(script: redis.commands.core.Script, conn: Connection, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA on `conn` (EVAL when Redis lost the script). A connection that failed mid-call is closed,
    so a half-read reply never reaches the next command; it reconnects on its next one."""
    try:
        conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return conn.read_response()
        except NoScriptError:  # Redis restarted or SCRIPT FLUSH: the source loads it again
            conn.send_command("EVAL", script.script, len(keys), *keys, *args)
            return conn.read_response()
    except ResponseError:
        raise  # Redis answered: the connection is in step
    except BaseException:
        conn.disconnect()
        raise


def _quiet(conn: Connection) -> bool:
    """Whether nothing is waiting on the connection's socket: no end of file, no stray reply."""
    sock = conn._sock
    if sock is None:
        return True  # not connected: the next command connects
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return not poller.poll(0)


class PinnedScript:
    """A Lua script run with EVALSHA on a Redis connection that stays with the calling thread.

    A connection that failed is closed and reconnects on its next command; one left idle for over
    CHECK_IDLE_AFTER_S is checked first, as the pool checks at checkout; a forked child takes its own.
    """

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.pool = client.connection_pool
        self.script = client.register_script(source)  # its sha, and EVAL when Redis lost the script
        self._local = threading.local()

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        return _run(self.script, self._connection(), keys, args)

    def _connection(self) -> Connection:
        local = self._local
        now = time.monotonic()
        if getattr(local, "pid", None) != os.getpid():  # first use in this thread, or a forked child
            conn = self.pool.get_connection()
            conn.register_connect_callback(self._kernel_timeouts)
            self._kernel_timeouts(conn)
            local.conn, local.pid = conn, os.getpid()
        elif now - local.used > CHECK_IDLE_AFTER_S and not _quiet(local.conn):
            # The server closed it meanwhile (a restart, its idle timeout), as the pool would find at
            # checkout: reconnect now rather than fail this call. Busy connections skip the check.
            local.conn.disconnect()
        local.used = now
        return local.conn

    def _kernel_timeouts(self, conn: Connection) -> None:
        """Let the kernel bound each send and receive (SO_SNDTIMEO/SO_RCVTIMEO) on a blocking socket.

        A Python socket with a timeout polls before every send and receive: two more system calls per
        round trip, each one a point where the thread gives up the GIL and may wait to get it back.
        """
        sock = conn._sock
        timeout = conn.socket_timeout
        if sock is None or not timeout:
            return
        bound = struct.pack("ll", int(timeout), int(timeout % 1 * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bound)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, bound)
        sock.settimeout(None)


class KeptScript:
    """Under gevent: the script on up to KEEP connections taken from the pool once and kept in a free
    list (no lock: greenlets switch only while one waits on its socket), so a call skips the pool's
    lock, readiness poll and bookkeeping. A call that finds none free while KEEP are out goes through
    redis-py's Script, so a burst never holds more. The sockets keep redis-py's own timeouts (gevent
    enforces them); failed and long-idle connections are handled as PinnedScript does."""

    KEEP = 8

    def __init__(self, client: redis.Redis, source: str) -> None:
        self.pool = client.connection_pool
        self.script = client.register_script(source)
        self._free: list[tuple[Connection, float]] = []
        self._out = 0
        self._pid = os.getpid()

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        if self._pid != os.getpid():  # a forked child: its parent's sockets are not its own
            self._free, self._out, self._pid = [], 0, os.getpid()
        if not self._free and self._out >= self.KEEP:
            return self.script(keys=keys, args=args)
        self._out += 1  # before the checkout, which may yield to another greenlet (a new connection)
        try:
            conn = self._take()
        except BaseException:
            self._out -= 1
            raise
        try:
            return _run(self.script, conn, keys, args)
        finally:
            self._out -= 1
            self._free.append((conn, time.monotonic()))

    def _take(self) -> Connection:
        if not self._free:
            return self.pool.get_connection()
        conn, used = self._free.pop()
        if time.monotonic() - used > CHECK_IDLE_AFTER_S and not _quiet(conn):
            conn.disconnect()  # closed by the server meanwhile: reconnect rather than fail this call
        return conn
