"""compat.cachelib: an entry decoded from the bytes read ahead is the entry RedisCache.get returns."""

from __future__ import annotations

import redis
from cachelib import RedisCache

from appfactory.compat import cachelib as compat_cachelib
from tests.conftest import key_namespace
from tests.support.services import REDIS_URL, require_redis

VALUES = [(1796156724.5, {"text": "Zoë ✓", "n": [1, 2.5, None]}), (0.0, "plain"), (1.0, b"bytes"), (2.0, 7)]


def test_decoding_the_raw_bytes_equals_a_get(monkeypatch):
    require_redis()
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"{key_namespace()}:cache:"
    backend = RedisCache(host=client, key_prefix=prefix)
    try:
        for n, value in enumerate(VALUES):
            backend.set(f"k{n}", value, timeout=60)
            raw = client.get(f"{prefix}k{n}")
            assert compat_cachelib.decode(backend, raw) == (True, backend.get(f"k{n}"))
        assert compat_cachelib.decode(backend, None) == (True, None)  # absent: as get answers
        monkeypatch.setattr(compat_cachelib, "PRIVATE", False)
        assert compat_cachelib.decode(backend, client.get(f"{prefix}k0")) == (False, None)
    finally:
        for n in range(len(VALUES)):
            client.delete(f"{prefix}k{n}")
        client.close()
