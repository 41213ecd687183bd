"""Rate limits: Flask-Limiter with one budget per client, exact across workers through Redis.

`limiter` is the extension; `policy_limit` gives a blueprint or view a budget of its own. The
counters (storage.py), the headers (headers.py) and docs/ratelimit.md say how.
"""

from appfactory.ratelimit.limiter import (
    client_key,
    count_keys_by,
    limiter,
    limiter_config,
    policy_limit,
    storage_name,
    write_limit_headers,
)

__all__ = [
    "client_key",
    "count_keys_by",
    "limiter",
    "limiter_config",
    "policy_limit",
    "storage_name",
    "write_limit_headers",
]
