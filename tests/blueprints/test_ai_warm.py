"""`flask ai warm`: why a prompt failed, a failing exit status, and where the cache was warmed."""

from __future__ import annotations

import pytest

from tests.support.services import REDIS_URL, free_port, require_redis
from tests.support.upstream import FakeModel

MEMORY_ONLY = "this process's memory only: without REDIS_URL the cache lives in each process"


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("good one\nbad one\ngood two\nbad two\n")
    return str(path)


def _warm(app, prompts: str):
    return app.test_cli_runner().invoke(args=["ai", "warm", "--prompts", prompts])


def test_failed_prompts_are_counted_by_reason_and_the_exit_status_says_so(new_app, prompts):
    failing = {"bad one": 500, "bad two": 400}
    with FakeModel(status=lambda prompt, before: failing.get(prompt, 200)) as model:
        app = new_app(AI_PROVIDER="openai", AI_BASE_URL=model.url, AI_RETRIES=0, AI_BREAKER_FAILURES=100)
        result = _warm(app, prompts)
    assert result.exit_code == 1, result.output
    assert "4 prompts" in result.output and "2 computed" in result.output and "2 failed" in result.output
    reasons = [line for line in result.output.splitlines() if line.startswith("failed: ")]
    assert len(reasons) == 2, result.output  # a 500 and a 400 from the model server: two reasons
    assert all(line.split()[1] == "1" for line in reasons)
    assert f"warmed: {MEMORY_ONLY}" in result.output


def test_a_clean_run_exits_0_and_names_redis(new_app, prompts):
    require_redis().close()
    app = new_app(REDIS_URL=REDIS_URL)
    result = _warm(app, prompts)
    assert result.exit_code == 0, result.output
    assert "4 computed" in result.output and "0 failed" in result.output
    assert "warmed: Redis" in result.output.splitlines()
    assert app.test_client().get("/api/v1/ai/generate?prompt=bad one").headers["X-Cache"] == "HIT"


def test_without_redis_it_says_memory_only(new_app, prompts):
    result = _warm(new_app(), prompts)
    assert result.exit_code == 0, result.output
    assert f"warmed: {MEMORY_ONLY}" in result.output


def test_with_redis_unreachable_nothing_is_stored_and_it_exits_1(new_app, prompts):
    app = new_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0", REDIS_RETRY_AFTER_S=30)
    result = _warm(app, prompts)
    assert result.exit_code == 1, result.output
    assert "warmed: nowhere: Redis (REDIS_URL) is not answering" in result.output
