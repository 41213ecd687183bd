"""The whole service on every library's public way answers exactly as on the private ways."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import key_namespace
from tests.support.gunicorn import ROOT
from tests.support.services import require_redis
from tests.support.windows import clear_of_minute_edge

LIBRARIES = ("Flask-Limiter", "limits", "redis", "cachelib", "werkzeug", "spectree")


def _run(tmp_path, name: str, public: str | None) -> tuple[list, str]:
    env = {key: value for key, value in os.environ.items() if key != "AIGEN_COMPAT_PUBLIC"}
    if public is not None:
        env["AIGEN_COMPAT_PUBLIC"] = public
    command = [
        sys.executable,
        "-m",
        "tests.support.sequence",
        f"sqlite:///{tmp_path / name}.db",
        key_namespace(),
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # The answers are the last line; the service's own log lines (stdout) and the warnings of what
    # is imported before its logging is set up (stderr) come before.
    *logged, answers = done.stdout.splitlines()
    return json.loads(answers), "\n".join([*logged, done.stderr])


def test_every_public_way_answers_as_the_private_ways_do(tmp_path):
    require_redis()
    clear_of_minute_edge()
    private, private_err = _run(tmp_path, "private", None)
    public, public_err = _run(tmp_path, "public", "all")
    retry_in = [(a.pop("retry_in"), b.pop("retry_in")) for a, b in zip(private, public, strict=True)]
    assert public == private
    assert all((f is None) == (p is None) and abs((f or 0) - (p or 0)) <= 1 for f, p in retry_in), retry_in
    assert [answer["status"] for answer in private] == [200, 200, 422, 201, 200, 200, 200, 404, 429, 200, 401]
    assert [answer["headers"]["X-Cache"] for answer in private[:2]] == ["MISS", "HIT"]
    assert private[8]["headers"]["Retry-After"] is True
    assert private[10]["headers"]["WWW-Authenticate"] is not None  # revoked: refused at once
    assert "public way" not in private_err
    for library in LIBRARIES:
        assert public_err.count(f"{library}: using the public way") == 1, public_err
