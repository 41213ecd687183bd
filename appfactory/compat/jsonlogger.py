"""python-json-logger: the format's fields renamed once, not on every line.

For a line from `emit()` (every request line) the formatter's fields are copied straight from the
record, from the list python-json-logger parses out of the format (`_required_fields`) renamed with
its `_get_rename`, both private. The public way is `JsonFormatter.add_fields` (docs/compat.md).
"""

from __future__ import annotations

from typing import Any

from appfactory.compat import fast_path

TESTED = "4.2.0"
FAST = fast_path("python-json-logger", TESTED)


def named_fields(formatter: Any) -> list[tuple[str, str]] | None:
    """(record attribute, output key) for each field of the format; None: use `add_fields`."""
    if not FAST:
        return None
    return [(name, formatter._get_rename(name)) for name in formatter._required_fields]
