"""Redis: one connection pool per app, with short timeouts and a circuit breaker."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from appfactory.resilience.breaker import Breaker
from appfactory.resilience.pools import waiting_queue

REDIS_ERRORS = (redis.RedisError, OSError)


SENTINEL_SCHEME = "redis+sentinel://"
CLUSTER_SCHEME = "redis+cluster://"


def client_options(config: dict[str, Any]) -> dict[str, Any]:
    """Timeouts every Redis client of the service shares: fail in milliseconds, not seconds."""
    timeout = config["REDIS_TIMEOUT_MS"] / 1000.0
    return {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry_on_timeout": False,
        "retry": None,
        "health_check_interval": 30,
    }


def build_client(config: dict[str, Any]) -> redis.Redis:
    """A client for REDIS_URL with the service's timeouts.

    A standalone Redis gets a bounded pool that a request waits on briefly (REDIS_MAX_CONNECTIONS,
    REDIS_POOL_WAIT_MS): a burst queues for a connection instead of failing, and a pool still dry after
    the wait is that request's 503, never a breaker opening for everyone. Sentinel's and Cluster's pools
    do not wait: they may open one connection per connection the worker serves.
    """
    url = config["REDIS_URL"]
    if url.startswith(SENTINEL_SCHEME):
        return sentinel_client(url, _unbounded(config))
    if url.startswith(CLUSTER_SCHEME):
        return cluster_client(url, _unbounded(config))
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=config["REDIS_MAX_CONNECTIONS"],
        timeout=config["REDIS_POOL_WAIT_MS"] / 1000.0,
        queue_class=waiting_queue("Redis"),
        **client_options(config),
    )
    return redis.Redis(connection_pool=pool)


def _unbounded(config: dict[str, Any]) -> dict[str, Any]:
    return {**client_options(config), "max_connections": config["GUNICORN_WORKER_CONNECTIONS"]}


def is_cluster(config: dict[str, Any]) -> bool:
    return (config.get("REDIS_URL") or "").startswith(CLUSTER_SCHEME)


def _addresses(netloc: str, default_port: int) -> list[tuple[str, int]]:
    """`host[:port],host[:port]...` after any user information."""
    addresses = []
    for address in netloc.rpartition("@")[2].split(","):
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
        addresses.append((host, int(port or default_port)))
    return addresses


def _credentials(url: str) -> dict[str, str | None]:
    parts = urlsplit(url)
    return {
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
    }


def cluster_options(options: dict[str, Any]) -> dict[str, Any]:
    """The service's client options as RedisCluster takes them: the same timeouts on every node's
    connections, and one retry, to follow a redirection (MOVED, ASK) after slots moved."""
    per_node = {key: value for key, value in options.items() if key not in ("retry", "retry_on_timeout")}
    return {**per_node, "retry": Retry(NoBackoff(), 1)}


def cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    """`redis+cluster://[[user]:password@]host[:port][,host[:port]...]`: a Redis Cluster client that
    learns the slots from any of these nodes."""
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in _addresses(urlsplit(url).netloc, 6379)],
        **_credentials(url),
        **cluster_options(options),
    )


def sentinel_client(url: str, options: dict[str, Any]) -> redis.Redis:
    """`redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]`: a client of the
    service's current primary. Every new connection asks the sentinels where the primary is, so after a
    failover the connections that failed reconnect to the promoted replica."""
    parts = urlsplit(url)
    service, _, db = parts.path.strip("/").partition("/")
    # The sentinels get the same deadlines and no retries: redis-py's default retries with backoff
    # would spend seconds on a sentinel that is down before asking the next one.
    asking = {key: options[key] for key in ("socket_connect_timeout", "socket_timeout", "retry")}
    sentinels = Sentinel(_addresses(parts.netloc, 26379), sentinel_kwargs=asking)
    return sentinels.master_for(service, db=int(db or 0), **_credentials(url), **options)


class RedisClient:
    """Flask extension: app.extensions['redis'] holds the client and its breaker, or None."""

    def init_app(self, app: Flask) -> None:
        if not app.config.get("REDIS_URL"):
            app.extensions["redis"] = None
            return
        app.extensions["redis"] = _State(
            build_client(app.config), Breaker("Redis", app.config["REDIS_RETRY_AFTER_S"])
        )

    @property
    def configured(self) -> bool:
        return current_app.extensions.get("redis") is not None

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions["redis"].client

    @property
    def breaker(self) -> Breaker:
        return current_app.extensions["redis"].breaker

    def probe(self) -> tuple[bool, float]:
        """PING within the client's timeout; returns (answered, latency in ms)."""
        state = current_app.extensions["redis"]
        started = time.perf_counter()
        try:
            ok = bool(state.client.ping())
        except REDIS_ERRORS as exc:
            state.breaker.failed(exc)
            ok = False
        else:
            state.breaker.succeeded()
        return ok, round((time.perf_counter() - started) * 1000, 2)


class _State:
    def __init__(self, client: redis.Redis, breaker: Breaker) -> None:
        self.client = client
        self.breaker = breaker


redis_client = RedisClient()
