"""Every Python example the documentation shows runs as written, and so do SPEC §6's and §8's.

Each ```python (or ```py) block of README.md and docs/*.md is executed on its own, in a fresh namespace,
inside the app context of a test app (SQLite, SimpleCache, no Redis, LOG_LEVEL=INFO): an import that
breaks, a name that moved or a call whose signature changed fails here. A block that cannot run in
a test (it needs a live model server, it is a fragment of a larger file) opts out with the first line
`# not run` (a reason may follow: `# not run: needs Ollama`); keep that rare.
SPEC.md is not part of the repository, so its snippets are copied below as literal strings.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import textwrap
from pathlib import Path

import pytest

from appfactory.observability.logging import StdoutHandler

ROOT = Path(__file__).resolve().parents[1]
OPT_OUT = "# not run"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the opening fence, dedented code) of each ```python / ```py block of Markdown."""
    blocks, lines, number = [], text.splitlines(), 0
    while number < len(lines):
        opening = _FENCE.match(lines[number])
        number += 1
        if opening is None:
            continue
        start, body = number, []
        while number < len(lines) and not _FENCE.match(lines[number]):
            body.append(lines[number])
            number += 1
        number += 1  # the closing fence
        if opening["lang"].lower() in ("python", "py", "python3"):
            blocks.append((start, textwrap.dedent("\n".join(body))))
    return blocks


def _documented() -> list[pytest.param]:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line, code in python_blocks(path.read_text(encoding="utf-8")):
            name = f"{path.relative_to(ROOT)}:{line}"
            marks = [pytest.mark.skip(reason=f"{name} opts out ({OPT_OUT})")] if _opted_out(code) else []
            found.append(pytest.param(name, code, id=name, marks=marks))
    return found


def _opted_out(code: str) -> bool:
    first = next((line.strip() for line in code.splitlines() if line.strip()), "")
    return first.startswith(OPT_OUT)


DOCUMENTED = _documented()


def run_example(name: str, code: str) -> dict:
    """Execute `code` as a module of its own would run; its exceptions propagate."""
    namespace = {"__name__": "__docs_example__"}
    exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the project's own documentation
    return namespace


@pytest.fixture
def app(new_app):
    yield new_app(LOG_LEVEL="INFO")
    _release_capture()


def _release_capture() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, StdoutHandler):
            handler.stream = sys.__stdout__  # capsys closes its stream after the test


def _json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_the_documentation_has_python_examples():
    assert DOCUMENTED, "no ```python block found in README.md or docs/*.md: is the extraction broken?"


@pytest.mark.parametrize(("name", "code"), DOCUMENTED)
def test_documented_example_runs(app, name, code):
    with app.app_context():
        run_example(name, code)


def test_a_broken_import_in_an_example_fails(app):
    code = python_blocks("Text.\n\n```python\nfrom appfactory.nowhere import api_logger\n```\n")[0][1]
    with app.app_context(), pytest.raises(ModuleNotFoundError):
        run_example("broken.md:3", code)


def test_blocks_are_found_dedented_and_other_languages_left_alone():
    text = "- item\n\n  ```python\n  x = 1\n  ```\n\n```sh\nls\n```\n\n```py\n# not run\nboom(\n```\n"
    assert python_blocks(text) == [(3, "x = 1"), (11, "# not run\nboom(")]
    assert _opted_out(python_blocks(text)[1][1])


# SPEC §8, as written there (`e` and `data` are the caller's: given here).
SPEC_8 = """
from appfactory.logging import api_logger

api_logger.info("User action", user_id=123, action="create")
data = {"id": 5}
try:
    raise ValueError("bad input")
except ValueError as e:
    api_logger.error("Operation failed", error=e, context=data)
"""


def test_spec_8_api_logger(new_app, capsys):
    app = new_app(LOG_LEVEL="INFO")  # built as the test runs, so its log lines go to capsys
    capsys.readouterr()
    try:
        with app.app_context():
            run_example("SPEC.md §8", SPEC_8)
    finally:
        _release_capture()
    info, error = [line for line in _json_lines(capsys) if line["logger"] == "appfactory.api"]
    assert (info["message"], info["user_id"], info["action"]) == ("User action", 123, "create")
    assert (error["level"], error["message"], error["context"]) == ("ERROR", "Operation failed", {"id": 5})
    assert error["error"]["type"] == "ValueError" and error["error"]["message"] == "bad input"
    assert error["error"]["traceback"].startswith("Traceback")


# SPEC §6, its two calls as written there, around a function and a view of the example's own.
SPEC_6 = """
from flask import current_app

from appfactory.cache import cache_response, invalidate_cache

calls = []


@cache_response(ttl=600, key_prefix="templates")
def list_templates(limit, offset=0):
    calls.append((limit, offset))
    return {"limit": limit, "offset": offset}


@cache_response(ttl=600, key_prefix="user", key=lambda user_id, part: f"{user_id}:{part}")
def user_section(user_id, part):
    calls.append((user_id, part))
    return {"id": user_id, "part": part}


assert list_templates(20) == list_templates(20) == {"limit": 20, "offset": 0}
assert calls == [(20, 0)]
user_section(123, "profile"), user_section(123, "settings"), user_section(7, "profile")
deleted = invalidate_cache("user", pattern="123:*")
"""


def test_spec_6_cache_response_and_invalidate_cache(app):
    with app.app_context():
        namespace = run_example("SPEC.md §6", SPEC_6)
        assert namespace["deleted"] == 2
        store = app.extensions["response_cache"].store
        assert sorted(store.keys("user")) == ["user:7:profile"]


SPEC_6_VIEW = """
from flask import current_app, request

from appfactory.cache import cache_response


@current_app.get("/example/<int:page>")
@cache_response(ttl=600, key_prefix="templates")
def example(page):
    return {"page": page, "sort": request.args.get("sort")}
"""


def test_spec_6_cache_response_on_a_view(app):
    with app.app_context():
        run_example("SPEC.md §6 (view)", SPEC_6_VIEW)
    client = app.test_client()
    first = client.get("/example/2?sort=name&dir=asc")
    assert first.headers["X-Cache"] == "MISS" and first.get_json() == {"page": 2, "sort": "name"}
    assert client.get("/example/2?dir=asc&sort=name").headers["X-Cache"] == "HIT"
    other = client.get("/example/2?sort=date")
    assert other.headers["X-Cache"] == "MISS" and other.get_json()["sort"] == "date"
