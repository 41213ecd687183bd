"""`flask cache ...`: inspect, clear, invalidate and warm the response cache."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from appfactory.cache import HIT, STALE, cache_status
from appfactory.cacheflow import ResponseCache
from appfactory.errors import ApiError
from appfactory.redis_client import REDIS_ERRORS

cache_cli = AppGroup("cache", help="Response cache commands.")


def _state() -> ResponseCache:
    return current_app.extensions["response_cache"]


@contextmanager
def _answering() -> Iterator[None]:
    """Turn a Redis failure into one clear line instead of a traceback."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise click.ClickException(f"Redis is unavailable: {exc}") from None


def _describe(state: ResponseCache) -> str:
    if state.store.name == "redis":
        return f"backend: redis, namespace {current_app.config['CACHE_NAMESPACE']!r}"
    return "backend: simple (this process's own memory; every server worker has its own)"


@cache_cli.command("stats")
def stats() -> None:
    """Backend, keys per prefix, hits, misses and hit rate."""
    state = _state()
    with _answering():
        keys = Counter(key.split(":", 1)[0] for key in state.store.keys())
        totals = state.counters.totals()
    click.echo(_describe(state))
    header = f"{'prefix':<16}{'keys':>8}{'hits':>10}{'stale':>8}{'misses':>10}{'bypass':>8}{'hit rate':>10}"
    click.echo(header)
    for prefix in sorted(set(keys) | set(totals)):
        counts = totals.get(prefix, {})
        hits, stale = counts.get("hit", 0), counts.get("stale", 0)
        lookups = hits + stale + counts.get("miss", 0) + counts.get("bypass", 0)
        rate = f"{100.0 * (hits + stale) / lookups:.1f}%" if lookups else "-"
        click.echo(
            f"{prefix:<16}{keys.get(prefix, 0):>8}{hits:>10}{stale:>8}"
            f"{counts.get('miss', 0):>10}{counts.get('bypass', 0):>8}{rate:>10}"
        )


@cache_cli.command("clear")
@click.option("--prefix", default=None, help="Only entries under this prefix (default: every entry).")
def clear(prefix: str | None) -> None:
    """Delete the service's cache entries; keys outside its namespace are never touched."""
    with _answering():
        deleted = _state().store.delete(prefix)
    click.echo(f"deleted {deleted} entries")


@cache_cli.command("invalidate")
@click.argument("prefix")
@click.option("--pattern", default="*", show_default=True, help="Glob over the key after the prefix.")
def invalidate(prefix: str, pattern: str) -> None:
    """Delete the entries under PREFIX whose key matches the pattern."""
    with _answering():
        deleted = _state().store.delete(prefix, pattern)
    click.echo(f"deleted {deleted} entries")


@cache_cli.command("warm")
@click.option("--prompts", "prompts_file", type=click.File("r"), required=True, help="One prompt a line.")
@click.option("--model", default=None, help="Model to warm (default: the provider's).")
@click.option("--max-tokens", default=None, type=click.IntRange(1, 4096), help="As the API's max_tokens.")
@click.option("--temperature", default=None, type=click.FloatRange(0, 2), help="As the API's temperature.")
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1, 32), help="Parallel calls.")
def warm(prompts_file, model, max_tokens, temperature, workers) -> None:
    """Fill the AI cache from a file of prompts, with the same keys the API uses."""
    from blueprints.ai import views

    limit = current_app.config["MAX_PROMPT_CHARS"]
    prompts = list(dict.fromkeys(line.strip() for line in prompts_file if line.strip()))
    too_long = [prompt for prompt in prompts if len(prompt) > limit]
    prompts = [prompt for prompt in prompts if len(prompt) <= limit]
    options = {
        "model": model,
        "max_tokens": max_tokens or views.DEFAULT_MAX_TOKENS,
        "temperature": float(views.DEFAULT_TEMPERATURE if temperature is None else temperature),
    }
    app = current_app._get_current_object()
    started = time.perf_counter()
    outcomes: Counter[str] = Counter()
    with ThreadPoolExecutor(workers) as pool, click.progressbar(length=len(prompts), label="warming") as bar:
        futures = [pool.submit(_warm_one, app, prompt, options) for prompt in prompts]
        for future in as_completed(futures):
            outcomes[future.result()] += 1
            bar.update(1)
    _state().counters.flush()
    click.echo(
        f"{len(prompts)} prompts in {time.perf_counter() - started:.1f}s: "
        f"{outcomes['computed']} computed, {outcomes['cached']} already cached, "
        f"{outcomes['failed']} failed, {len(too_long)} skipped as too long"
    )


def _warm_one(app: Flask, prompt: str, options: dict) -> str:
    from blueprints.ai import service

    with app.app_context():
        try:
            service.generate(prompt, **options)
        except ApiError:
            return "failed"
        return "cached" if cache_status() in (HIT, STALE) else "computed"
