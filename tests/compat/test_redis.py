"""compat.redis.PinnedScript: the rate limiter's script on a connection that stays with its thread."""

from __future__ import annotations

import os
import threading
import time

import pytest
import redis

from appfactory.compat.redis import CHECK_IDLE_AFTER_S, PinnedScript
from tests.support.services import RedisServer

ECHO = "return ARGV[1]"


@pytest.fixture
def server():
    started = RedisServer().start()
    yield started
    started.close()


def _clients(url: str) -> int:
    return sum(1 for c in redis.Redis.from_url(url).client_list() if c["cmd"] != "client|list")


def _local_port(script: PinnedScript) -> int:
    """The local port of the calling thread's connection: which socket it is."""
    return script._local.conn._sock.getsockname()[1]


def test_each_thread_keeps_one_connection(server):
    script = PinnedScript(redis.Redis.from_url(server.url), ECHO)
    assert [script([], [n]) for n in ("a", "b", "c")] == [b"a", b"b", b"c"]
    assert _clients(server.url) == 1
    threads = [threading.Thread(target=lambda: [script([], ["x"]) for _ in range(5)]) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _clients(server.url) == 4


def test_a_flushed_script_is_loaded_again(server):
    client = redis.Redis.from_url(server.url)
    script = PinnedScript(client, ECHO)
    assert script([], ["before"]) == b"before"
    client.script_flush()
    assert script([], ["after"]) == b"after"
    assert script([], ["again"]) == b"again"


def test_a_killed_connection_fails_once_then_reconnects(server):
    client = redis.Redis.from_url(server.url)
    script = PinnedScript(client, ECHO)
    assert script([], ["up"]) == b"up"
    assert client.client_kill_filter(_type="normal", skipme=True) >= 1
    try:
        script([], ["lost"])
    except redis.ConnectionError:
        pass  # the reply was lost with the connection; the caller's breaker takes it from here
    assert script([], ["back"]) == b"back"


def test_a_forked_child_uses_a_connection_of_its_own(server):
    script = PinnedScript(redis.Redis.from_url(server.url), ECHO)
    assert script([], ["parent"]) == b"parent"
    parent_port = _local_port(script)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        ok = script([], ["child"]) == b"child" and _local_port(script) != parent_port
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert script([], ["parent again"]) == b"parent again"


def test_a_frozen_server_costs_one_socket_timeout_then_it_reconnects(server):
    client = redis.Redis.from_url(server.url, socket_timeout=0.2, socket_connect_timeout=0.2)
    script = PinnedScript(client, ECHO)
    assert script([], ["warm"]) == b"warm"
    # The kernel bounds the wait (SO_RCVTIMEO) on a blocking socket: no poll before each call.
    assert script._local.conn._sock.gettimeout() is None
    server.freeze()
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        script([], ["frozen"])
    assert 0.15 <= time.monotonic() - started < 1.0
    server.thaw()
    assert script([], ["thawed"]) == b"thawed"


def test_a_restarted_server_costs_no_failed_call_after_an_idle_second(server):
    script = PinnedScript(redis.Redis.from_url(server.url), ECHO)
    assert script([], ["before"]) == b"before"
    server.stop()
    server.start()  # every thread's pinned socket is now closed by its peer
    time.sleep(CHECK_IDLE_AFTER_S + 0.1)
    assert script([], ["after"]) == b"after"  # checked, reconnected, no error for this call


INCR = "return redis.call('incrby', KEYS[1], ARGV[1])"


def test_the_pinned_script_answers_as_redis_pys_script(server, monkeypatch):
    from appfactory.compat import redis as compat_redis

    client = redis.Redis.from_url(server.url)
    private = compat_redis.script(client, INCR)
    monkeypatch.setattr(compat_redis, "PRIVATE", False)
    public = compat_redis.script(client, INCR)
    assert isinstance(private, PinnedScript) and not isinstance(public, PinnedScript)
    replies = [private(["n"], [2]), public(["n"], [3]), private(["n"], [1]), public(["n"], [-6])]
    assert replies == [2, 5, 6, 0]
    client.script_flush()  # both load the script again by themselves
    assert (private(["n"], [1]), public(["n"], [1])) == (1, 2)


_GREENLETS = """
from gevent import monkey

monkey.patch_all()
import sys

import gevent
import redis

from appfactory.compat.redis import KeptScript

url = sys.argv[1]
pool = redis.BlockingConnectionPool.from_url(url, max_connections=50, timeout=5)  # as the service's
script = KeptScript(redis.Redis(connection_pool=pool), "redis.call('GET', 'x') return ARGV[1]")
answers = [gevent.spawn(script, [], [str(n)]) for n in range(200)]
gevent.joinall(answers, raise_error=True)
assert [g.value for g in answers] == [str(n).encode() for n in range(200)]
print(len(script._free), script._out)
"""


def test_under_gevent_the_kept_connections_stay_few_whatever_the_burst(server):
    """200 greenlets at once: every answer right, and no more than KEEP connections kept (the others
    went through the pool and back)."""
    import subprocess
    import sys

    from appfactory.compat.redis import KeptScript

    done = subprocess.run(
        [sys.executable, "-c", _GREENLETS, server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kept, out = (int(n) for n in done.stdout.split())
    assert 1 <= kept <= KeptScript.KEEP and out == 0
