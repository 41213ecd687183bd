"""What the benchmark runs on: a fresh PostgreSQL database, a Redis key namespace, gunicorn servers."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import redis
from sqlalchemy import create_engine

from appfactory.config import sqlalchemy_url
from appfactory.db import migrate
from appfactory.db.models import templates
from tests.support.gunicorn import Gunicorn
from tests.support.keys import issue_key
from tests.support.services import REDIS_URL, PostgresDatabase, delete_namespace, require_redis

# The limiter stays on (with Redis, as in production) but never says no during a run.
UNLIMITED_PER_MINUTE = "1000000000"
TEMPLATE_COUNT = 20  # one default page of the templates list


class Environment:
    """A migrated, seeded database and a Redis namespace of the run's own, cleaned up on exit."""

    def __init__(self) -> None:
        self.namespace = f"bench-{uuid.uuid4().hex[:8]}"
        self.redis_url = REDIS_URL
        self.redis: redis.Redis = require_redis(REDIS_URL)
        self.database = PostgresDatabase()
        self.template_id = 0
        self.api_key = ""

    def __enter__(self) -> Environment:
        try:
            migrate.upgrade(self.database.url)
            self.template_id = _seed(self.database.url)
            self.api_key = issue_key(self.database.url, admin=False)
            self.flush()
        except BaseException:
            self.database.drop()  # __exit__ does not run when __enter__ fails
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.flush()
        self.database.drop()

    def flush(self) -> int:
        """Delete this run's keys, and only those (SCAN, never FLUSHDB)."""
        return delete_namespace(self.redis, self.namespace)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment shared by every gunicorn of the run."""
        return {
            "DATABASE_URL": self.database.url,
            "REDIS_URL": self.redis_url,
            "CACHE_NAMESPACE": self.namespace,
            "RATE_LIMIT_PER_MINUTE": UNLIMITED_PER_MINUTE,
            "AI_LOCAL_LATENCY_MS": "0",
            "AI_ALLOW_ANONYMOUS": "true",  # the anonymous HIT; `ai_hit_key` sends the run's key
            # Every server of the run, references included: with one shared socket, wrk's keep-alive
            # connections sometimes all land on one worker and a round measures that (performance.md).
            "GUNICORN_REUSE_PORT": "true",
            # ... whose price is that a recycled worker resets the connections queued on its socket
            # (150-190 per 10 s of `wrk -c200` with a recycle every ~6,000 requests; none without):
            # the workers are not recycled during a run. gunicorn reads this after gunicorn.conf.py.
            "GUNICORN_CMD_ARGS": "--max-requests 0",
            **extra,
        }


def _seed(url: str) -> int:
    """Insert TEMPLATE_COUNT templates; returns the id of the first."""
    engine = create_engine(sqlalchemy_url(url))
    rows = [
        {
            "name": f"bench-{n:03d}",
            "body": f"Write a short note number {n} about {{{{ topic }}}} for {{{{ audience }}}}.",
            "description": "benchmark template",
        }
        for n in range(TEMPLATE_COUNT)
    ]
    with engine.begin() as conn:
        conn.execute(templates.insert(), rows)
        first = conn.execute(templates.select().order_by(templates.c.id).limit(1)).first()
    engine.dispose()
    return first.id


def start_all(servers: dict[str, Gunicorn]) -> None:
    """Start the gunicorns side by side; stop them all if any fails."""
    with ThreadPoolExecutor(len(servers)) as pool:
        futures = [pool.submit(server.start, 60.0) for server in servers.values()]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        stop_all(servers)
        raise errors[0]


def stop_all(servers: dict[str, Gunicorn]) -> None:
    """Stop every gunicorn and remove its log."""
    for server in servers.values():
        server.__exit__(None, None, None)
