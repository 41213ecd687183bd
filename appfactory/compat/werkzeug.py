"""werkzeug: a response's WSGI headers copied without validating each value a second time.

werkzeug's `get_wsgi_headers` copies every header through `Headers.add`, which checks each value
again although the original `Headers` checked it on the way in. When werkzeug would change nothing
(no Location or Content-Location to rewrite, a status whose Content-Length stays, the length already
set), the same copy is made directly through `Headers._list`, its private storage (docs/compat.md).
"""

from __future__ import annotations

from werkzeug.datastructures import Headers

from appfactory.compat import private_way

TESTED = "3.1.9"
PRIVATE = private_way("werkzeug", TESTED)

# Headers werkzeug's get_wsgi_headers may rewrite, lower-cased.
_FIXED_UP = frozenset({"location", "content-location"})


def unchanged_copy(status: int, headers: Headers) -> Headers | None:
    """The copy `get_wsgi_headers` would return when it changes nothing; None: ask werkzeug."""
    if not PRIVATE or status < 200 or status in (204, 304):
        return None
    items = headers._list  # noqa: SLF001
    has_length = False
    for key, _ in items:
        lowered = key.lower()
        if lowered in _FIXED_UP:
            return None
        has_length = has_length or lowered == "content-length"
    if not has_length:
        return None
    copy = Headers()
    copy._list = items.copy()  # noqa: SLF001
    return copy
