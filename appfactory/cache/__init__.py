"""The response cache: Flask-Caching's store with fresh, stale, single-flight and bypass outcomes.

`cache_response` caches views and functions alike (`cache_view` and `cache_call` are its two halves),
writes call `invalidate_cache`; `cache_status()` is the outcome the request's cached call had (X-Cache);
`answers_fresh_hits` lets a fresh entry answer a view's request before the view runs (early.py).
See docs/cache.md.
"""

from appfactory.cache.decorators import cache_call, cache_response, cache_view, invalidate_cache
from appfactory.cache.early import answers_fresh_hits
from appfactory.cache.outcomes import BYPASS, HIT, MISS, STALE, cache_status
from appfactory.cache.setup import backend_name, cache, init_cache

__all__ = [
    "BYPASS",
    "HIT",
    "MISS",
    "STALE",
    "answers_fresh_hits",
    "backend_name",
    "cache",
    "cache_call",
    "cache_response",
    "cache_status",
    "cache_view",
    "init_cache",
    "invalidate_cache",
]
