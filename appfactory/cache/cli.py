"""`flask cache ...`: inspect, clear and invalidate the response cache (features add their own warmers)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask import current_app
from flask.cli import AppGroup

from appfactory.cache.flow import ResponseCache
from appfactory.cache.stores import RedisStore
from appfactory.redis.client import REDIS_ERRORS

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
    return "backend: simple (this process's own memory; the server's worker keeps its own, which no CLI sees)"


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
    click.echo(f"deleted {_delete(prefix, '*')} entries")


@cache_cli.command("invalidate")
@click.argument("prefix")
@click.option("--pattern", default="*", show_default=True, help="Glob over the key after the prefix.")
def invalidate(prefix: str, pattern: str) -> None:
    """Delete the entries under PREFIX whose key matches the pattern."""
    click.echo(f"deleted {_delete(prefix, pattern)} entries")


def _delete(prefix: str | None, pattern: str) -> int:
    """Delete through the store; a pattern no index lists scans Redis, behind a progress bar over its
    keys (an index drops only what it lists, at once)."""
    store = _state().store
    with _answering():
        if not isinstance(store, RedisStore) or store.index_of(prefix, pattern) is not None:
            return store.delete(prefix, pattern)
        keys = sum(keyspace.dbsize() for keyspace in store.keyspaces())
        with click.progressbar(length=max(1, keys), label="scanning Redis") as bar:
            return store.delete(prefix, pattern, scanned=bar.update)
