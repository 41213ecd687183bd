"""The default serving model (GUNICORN_WORKER_CLASS=gevent): a request waiting on I/O holds a greenlet.

A generation spends seconds waiting on the model server; under gevent that wait costs a greenlet
(tens of KiB) instead of an OS thread, so one worker holds hundreds of them while it goes on answering
cache HITs and probes. Everything on the request path blocks only in sockets, `select`, `time.sleep`
and `threading` primitives, which gevent's monkey-patching makes cooperative: redis-py, urllib3 (the
model server), psycopg2 (through the wait callback of appfactory/db/deadline.py, which waits in
`select`), the bulkhead's semaphore, the breakers' locks. docs/serving.md tells what was measured.
"""

from __future__ import annotations

from collections.abc import Mapping

# Imported by gunicorn.conf.py before anything else of the service: nothing at module level here may
# import socket's users, ssl or threading (gunicorn itself has imported them, unpatched, which gevent
# handles: it warns only about modules that copied names out of ssl).


def make_cooperative(environ: Mapping[str, str]) -> bool:
    """Monkey-patch the standard library for gevent when it is the configured worker class, before the
    service imports redis, urllib3, psycopg2 or threading users. Returns whether it patched."""
    from appfactory.config import ConfigError, parse_one

    try:
        worker_class = parse_one("GUNICORN_WORKER_CLASS", environ)
    except ConfigError:  # reported with every other bad variable when the configuration is loaded
        return False
    if worker_class != "gevent":
        return False
    from gevent import monkey

    monkey.patch_all()
    return True


def cooperative_worker(head_deadline_s: float) -> type:
    """gunicorn's gevent worker class, with this deadline for a request's head (REQUEST_HEADER_TIMEOUT_S).
    Defined on first use: importing it imports gevent."""
    import gevent
    from gevent.socket import wait_read
    from gunicorn.workers.ggevent import GeventWorker

    from appfactory.serving.refusals import JsonRefusals

    class RequestHead:
        """`with`: the wait for one request's head on a connection.

        Up to `idle_s` (gunicorn's keepalive) for its first byte, then closed quietly: an idle
        keep-alive connection. Then up to `deadline_s` for the whole head: a client that trickles its
        headers is closed and logged, never holding the worker's attention (or a pool slot) for longer.
        Once the head is in, every read of the body and every write waits at most `deadline_s`.
        """

        def __init__(self, sock, addr, idle_s: float, deadline_s: float, log) -> None:
            self.sock, self.addr, self.idle_s, self.deadline_s, self.log = sock, addr, idle_s, deadline_s, log
            self.timer = None

        def __enter__(self) -> None:
            try:
                wait_read(self.sock.fileno(), timeout=self.idle_s)
            except TimeoutError:
                raise StopIteration("idle connection") from None  # gunicorn closes it, quietly
            self.timer = gevent.Timeout(self.deadline_s)
            self.timer.start()

        def __exit__(self, exc_type, exc, tb) -> bool:
            self.timer.close()
            if exc is self.timer:
                self.log.warning(
                    "Slow client: no complete request head within %g s, connection closed (from %s)",
                    self.deadline_s,
                    _address(self.addr),
                )
                return True  # no request: gunicorn's loop ends and closes the connection
            if exc is None:
                self.sock.settimeout(self.deadline_s)
            return False

    class CooperativeWorker(JsonRefusals, GeventWorker):
        """gunicorn's gevent worker, with the request head deadline and JSON refusals."""

        def init_process(self) -> None:
            self._connections: dict = {}
            super().init_process()

        def handle(self, listener, client, addr) -> None:
            current = gevent.getcurrent()
            self._connections[current] = (client, addr)
            try:
                super().handle(listener, client, addr)
            finally:
                self._connections.pop(current, None)

        def timeout_ctx(self) -> RequestHead:
            client, addr = self._connections[gevent.getcurrent()]
            return RequestHead(client, addr, self.cfg.keepalive, head_deadline_s, self.log)

    return CooperativeWorker


def _address(addr) -> str:
    return addr[0] if isinstance(addr, tuple) and addr else str(addr)
