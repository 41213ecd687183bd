"""cachelib: decode a RedisCache entry read by another command (the rate limiter's round trip).

The public way to read an entry is `RedisCache.get(key)`, a Redis round trip of its own. The value
the limiter's script already fetched is decoded with the cache's serializer instead, an attribute
cachelib does not document: one round trip less per cache HIT (docs/compat.md).
"""

from __future__ import annotations

from typing import Any

from appfactory.compat import private_way

TESTED = "0.17.0"
PRIVATE = private_way("cachelib", TESTED)


def decode(backend: Any, raw: bytes | None) -> tuple[bool, Any]:
    """(True, value) decoded from `raw` as `backend.get` would return it; (False, None) when only
    a `backend.get` of its own can tell (the public way)."""
    if not PRIVATE:
        return False, None
    return True, backend.serializer.loads(raw)
