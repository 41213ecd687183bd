"""A bare Flask route that makes one Redis round trip: the floor for any per-request Redis call.

An exact rate limit across workers needs one Redis round trip per request, whatever else a service
does; this route makes that one call (a GET, redis-py with its defaults) and nothing else, so its
throughput against bare Flask shows what the round trip alone costs on the machine.
"""

from __future__ import annotations

import os

import redis
from flask import Flask

app = Flask(__name__)
_client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
_KEY = f"{os.environ.get('CACHE_NAMESPACE', 'flask-redis')}:flask-redis:probe"


@app.get("/hello")
def hello() -> dict:
    _client.get(_KEY)
    return {"message": "hello"}


@app.get("/health/live")
def live() -> dict:
    return {"status": "alive"}
