"""`flask ai ...`: the AI blueprint's commands."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed

import click
from flask import Flask, current_app

from appfactory.cache import HIT, STALE, cache_status
from appfactory.web.errors import ApiError
from blueprints.ai import bp, service
from blueprints.ai.schemas import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, MAX_TOKENS


@bp.cli.command("warm")
@click.option("--prompts", "prompts_file", type=click.File("r"), required=True, help="One prompt a line.")
@click.option("--model", default=None, help="Model to warm (default: the provider's).")
@click.option(
    "--max-tokens", default=None, type=click.IntRange(1, MAX_TOKENS), help="As the API's max_tokens."
)
@click.option("--temperature", default=None, type=click.FloatRange(0, 2), help="As the API's temperature.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32), help="Parallel calls.")
def warm(prompts_file, model, max_tokens, temperature, workers) -> None:
    """Fill the AI cache from a file of prompts, with the same keys the API uses."""
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
    with ThreadPoolExecutor(workers) as pool, click.progressbar(length=len(prompts), label="warming") as bar:
        futures = [pool.submit(_warm_one, app, prompt, options) for prompt in prompts]
        for future in as_completed(futures):
            outcomes[future.result()] += 1
            bar.update(1)
    current_app.extensions["response_cache"].counters.flush()
    click.echo(
        f"{len(prompts)} prompts in {time.perf_counter() - started:.1f}s: "
        f"{outcomes['computed']} computed, {outcomes['cached']} already cached, "
        f"{outcomes['failed']} failed, {len(too_long)} skipped as too long"
    )


def _warm_one(app: Flask, prompt: str, options: dict) -> str:
    with app.app_context():
        try:
            service.generate(prompt, **options)
        except ApiError:
            return "failed"
        return "cached" if cache_status() in (HIT, STALE) else "computed"
