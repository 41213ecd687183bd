"""The import path the README promises: `appfactory.metrics.record_cache`, `observe_upstream`.

The metrics live in appfactory/observability/metrics.py; this module only names the helpers code calls.
"""

from appfactory.observability.metrics import observe_upstream, record_cache

__all__ = ["observe_upstream", "record_cache"]
