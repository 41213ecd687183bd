"""`flask ai ...`: the AI blueprint's commands."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed

import click
from flask import Flask, current_app

from appfactory.cache import HIT, STALE, backend_name, cache_status
from appfactory.web.errors import ApiError
from blueprints.ai import bp, service
from blueprints.ai.schemas import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, MAX_TOKENS

# Where the entries went, by backend_name().
_WHERE = {
    "redis": "Redis",
    "simple": "this process's memory only: without REDIS_URL the cache lives in each process",
    "bypass": "nowhere: Redis (REDIS_URL) is not answering, so nothing was stored",
}


@bp.cli.command("warm")
@click.option("--prompts", "prompts_file", type=click.File("r"), required=True, help="One prompt a line.")
@click.option("--model", default=None, help="Model to warm (default: the provider's).")
@click.option(
    "--max-tokens", default=None, type=click.IntRange(1, MAX_TOKENS), help="As the API's max_tokens."
)
@click.option("--temperature", default=None, type=click.FloatRange(0, 2), help="As the API's temperature.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32), help="Parallel calls.")
def warm(prompts_file, model, max_tokens, temperature, workers) -> None:
    """Fill the AI cache from a file of prompts, with the same keys the API uses.

    Exits 1 when a prompt failed (each reason counted) or nothing could be stored (Redis down).
    """
    limit = current_app.config["MAX_PROMPT_CHARS"]
    prompts = list(dict.fromkeys(line.strip() for line in prompts_file if line.strip()))
    too_long = [prompt for prompt in prompts if len(prompt) > limit]
    prompts = [prompt for prompt in prompts if len(prompt) <= limit]
    options = {
        "model": model,
        "max_tokens": max_tokens or DEFAULT_MAX_TOKENS,
        "temperature": float(DEFAULT_TEMPERATURE if temperature is None else temperature),
    }
    app = current_app._get_current_object()
    started = time.perf_counter()
    outcomes: Counter[str] = Counter()
    failures: Counter[tuple[str, str]] = Counter()
    with ThreadPoolExecutor(workers) as pool, click.progressbar(length=len(prompts), label="warming") as bar:
        futures = [pool.submit(_warm_one, app, prompt, options) for prompt in prompts]
        for future in as_completed(futures):
            outcome, reason = future.result()
            outcomes[outcome] += 1
            if reason is not None:
                failures[reason] += 1
            bar.update(1)
    current_app.extensions["response_cache"].counters.flush()
    click.echo(
        f"{len(prompts)} prompts in {time.perf_counter() - started:.1f}s: "
        f"{outcomes['computed']} computed, {outcomes['cached']} already cached, "
        f"{outcomes['failed']} failed, {len(too_long)} skipped as too long"
    )
    for (code, message), count in failures.most_common():
        click.echo(f"failed: {count} {code}: {message}")
    backend = backend_name()
    click.echo(f"warmed: {_WHERE[backend]}")
    if failures or backend == "bypass":
        raise click.exceptions.Exit(1)


def _warm_one(app: Flask, prompt: str, options: dict) -> tuple[str, tuple[str, str] | None]:
    """The prompt's outcome, and for a failure its (code, message)."""
    with app.app_context():
        try:
            service.generate(prompt, **options)
        except ApiError as error:
            return "failed", (error.code, error.message)
        except Exception as error:  # one prompt's bug is counted, not the end of the run
            return "failed", (type(error).__name__, str(error))
        return ("cached" if cache_status() in (HIT, STALE) else "computed"), None
