"""Token budgets per client: a model call reserves its worst case first, and settles its real usage.

A call reserves what it may cost at most (the prompt's estimate + max_tokens) against the caller's
budgets, per minute and per UTC day, in one Redis script: atomic across every worker and instance, so
a burst never spends more than the budget. Its end settles the real usage and gives the rest back,
also when it fails, times out or its client leaves. The counters are fixed windows that expire with
their window: the reservation of a worker that died is gone with it. Without Redis, and while Redis
does not answer, each worker counts its share (budget ÷ workers) in memory, as the request limits do.
docs/ratelimit.md says how a client sees it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, g
from redis import Redis

from appfactory.observability import tracing
from appfactory.redis.client import REDIS_ERRORS
from appfactory.resilience.breaker import Breaker

log = logging.getLogger(__name__)

WINDOWS = (("tokens", 60), ("tokens-day", 86_400))  # (policy name, seconds), as the headers name them
_GRACE_MS = 5_000  # a window's counter outlives the window: a late settlement still finds it
_NOTE = "token_reservation"  # on g: the request's reservation, for the headers

# KEYS: the windows' counters. ARGV[1]: the amount; ARGV[2i], ARGV[2i+1]: window i's limit (0: none)
# and its counter's TTL (ms). Answers {1, used...} once reserved in every window, or {0, i, used} for
# the first window i the amount does not fit.
RESERVE = """
local amount = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[2 * i])
    local used = tonumber(redis.call('get', key) or '0')
    if limit > 0 and used + amount > limit then
        return {0, i, used}
    end
end
local used = {1}
for i, key in ipairs(KEYS) do
    used[i + 1] = redis.call('incrby', key, amount)
    if redis.call('pttl', key) < 0 then
        redis.call('pexpire', key, ARGV[2 * i + 1])
    end
end
return used
"""

# KEYS as above; ARGV[1]: what to add (negative: given back); ARGV[i + 1]: counter i's TTL (ms), 0 when
# its window is over (nothing to settle there). Answers each counter's use after it.
SETTLE = """
local delta = tonumber(ARGV[1])
local used = {}
for i, key in ipairs(KEYS) do
    local ttl = tonumber(ARGV[i + 1])
    used[i] = 0
    if ttl > 0 then
        used[i] = redis.call('incrby', key, delta)
        if redis.call('pttl', key) < 0 then
            redis.call('pexpire', key, ttl)
        end
    end
end
return used
"""


@dataclass(frozen=True)
class Budget:
    """A client's budgets in tokens (None: none), in the order of WINDOWS."""

    per_minute: int | None = None
    per_day: int | None = None

    @property
    def limits(self) -> tuple[int | None, int | None]:
        return self.per_minute, self.per_day

    def __bool__(self) -> bool:
        return self.per_minute is not None or self.per_day is not None


class BudgetSpent(Exception):
    """The amount does not fit the `policy` window's `limit` now: `retry_in` seconds until it
    does, None when it never can (the amount alone is above the limit)."""

    def __init__(self, policy: str, limit: int, amount: int, retry_in: int | None) -> None:
        super().__init__(f"{amount} tokens do not fit the {policy} budget of {limit}")
        self.policy, self.limit, self.amount, self.retry_in = policy, limit, amount, retry_in


@dataclass
class Reservation:
    """Tokens held for one model call until it settles."""

    who: str
    budget: Budget
    amount: int
    starts: tuple[int, ...]  # each window's start (Unix seconds) when reserved
    shared: bool  # held in Redis (else in this worker's memory)
    used: list[int | None] = field(default_factory=list)  # each window's use after it (None: unknown)
    settled: bool = False

    def headers(self) -> list[tuple[str, str, str | None]]:
        """(policy, RateLimit-Policy item, RateLimit item or None when unknown) of each budget."""
        items = []
        now = time.time()
        used_by_window = self.used or [None] * len(WINDOWS)
        for (policy, size), limit, start, used in zip(
            WINDOWS, self.budget.limits, self.starts, used_by_window, strict=True
        ):
            if limit is None:
                continue
            left = None
            if used is not None:
                left = f'"{policy}";r={max(0, limit - used)};t={max(0, math.ceil(start + size - now))}'
            items.append((policy, f'"{policy}";q={limit};w={size}', left))
        return items


def noted() -> Reservation | None:
    """The reservation this request made, if any (the rate-limit headers list it)."""
    return g.get(_NOTE)


class TokenBudgets:
    """Per app: the token counters of every client, in Redis or (without it) this worker's memory."""

    def __init__(self, client: Redis | None, namespace: str, workers: int, retry_after: float) -> None:
        self.client = client
        self.prefix = f"{namespace}:tok"
        self.workers = workers
        self.breaker = Breaker("Token budgets on Redis", retry_after)
        self._reserve = client.register_script(RESERVE) if client is not None else None
        self._settle = client.register_script(SETTLE) if client is not None else None
        self._memory: dict[str, tuple[int, float]] = {}  # counter -> (use, expires at)
        self._lock = threading.Lock()

    def reserve(self, who: str, budget: Budget, amount: int) -> Reservation:
        """Hold `amount` tokens of `who`'s budget, or raise BudgetSpent. Nothing is held without a
        budget (settling still counts the use, for `flask keys usage`)."""
        now = time.time()
        starts = _starts(now)
        reservation = Reservation(who, budget, 0, starts, shared=self._use_redis())
        if not budget:
            return reservation
        for (policy, _), limit in zip(WINDOWS, budget.limits, strict=True):
            if limit is not None and amount > limit:
                raise BudgetSpent(policy, limit, amount, None)
        keys, ttls = self._counters(who, starts, now)
        limits = [limit or 0 for limit in budget.limits]
        if reservation.shared:
            try:
                with tracing.span("tokens.reserve", tracing.CLIENT, {"db.system.name": "redis"}):
                    answer = self._reserve(keys, [amount, *_interleave(limits, ttls)])
                self.breaker.succeeded()
            except REDIS_ERRORS as exc:
                self.breaker.failed(exc)
                reservation.shared = False
            else:
                return self._reserved(reservation, amount, answer, now)
        shares = [self._share(limit) if limit else 0 for limit in limits]
        return self._reserved(reservation, amount, self._reserve_in_memory(keys, shares, ttls, amount), now)

    def settle(self, reservation: Reservation, used: int) -> None:
        """The call is over and cost `used` tokens: count that instead of what was held. Once."""
        if reservation.settled:
            return
        reservation.settled = True
        delta = used - reservation.amount
        if not delta:
            return
        now = time.time()
        keys, ttls = self._counters(reservation.who, reservation.starts, now)
        if reservation.shared and self._use_redis():
            try:
                after = self._settle(keys, [delta, *ttls])
                self.breaker.succeeded()
            except REDIS_ERRORS as exc:
                self.breaker.failed(exc)
                log.warning(
                    "Tokens of a model call not settled (%+d for %s): %s", delta, reservation.who, exc
                )
                return
        else:
            after = self._add_in_memory(keys, ttls, delta)
        reservation.used = [int(value) for value in after]

    def usage(self, who: str) -> dict[str, int]:
        """What `who` has used in the current minute and day (reservations in flight included)."""
        now = time.time()
        keys, _ = self._counters(who, _starts(now), now)
        if self.client is not None:
            values = self.client.mget(keys)  # one hash slot: one command on Cluster too
        else:
            with self._lock:
                values = [self._memory.get(key, (0, 0.0))[0] for key in keys]
        return {policy: int(value or 0) for (policy, _), value in zip(WINDOWS, values, strict=True)}

    def _reserved(self, reservation: Reservation, amount: int, answer: list[Any], now: float) -> Reservation:
        g._get_current_object().token_reservation = reservation  # the headers list it, refused or not
        if int(answer[0]) != 1:
            index = int(answer[1]) - 1
            reservation.used = [int(answer[2]) if n == index else None for n in range(len(WINDOWS))]
            policy, size = WINDOWS[index]
            limit = reservation.budget.limits[index] or 0
            if not reservation.shared:
                limit = self._share(limit)
            raise BudgetSpent(
                policy, limit, amount, max(1, math.ceil(reservation.starts[index] + size - now))
            )
        reservation.amount = amount
        reservation.used = [int(value) for value in answer[1:]]
        return reservation

    def _counters(self, who: str, starts: tuple[int, ...], now: float) -> tuple[list[str], list[int]]:
        """Each window's counter (one hash slot for all: one script on Cluster) and its TTL in ms."""
        keys = [
            f"{self.prefix}:{{{who}}}:{size}:{start}"
            for (_, size), start in zip(WINDOWS, starts, strict=True)
        ]
        ttls = [
            max(0, int((start + size - now) * 1000) + _GRACE_MS)
            for (_, size), start in zip(WINDOWS, starts, strict=True)
        ]
        return keys, ttls

    def _use_redis(self) -> bool:
        return self.client is not None and self.breaker.allow()

    def _share(self, limit: int) -> int:
        """This worker's part of a budget while it counts alone: together never more than the budget."""
        return max(1, limit // self.workers)

    def _reserve_in_memory(
        self, keys: list[str], limits: list[int], ttls: list[int], amount: int
    ) -> list[int]:
        with self._lock:
            used = [self._current(key) for key in keys]
            for index, (limit, value) in enumerate(zip(limits, used, strict=True)):
                if limit and value + amount > limit:
                    return [0, index + 1, value]
            return [1, *self._add(keys, ttls, amount)]

    def _add_in_memory(self, keys: list[str], ttls: list[int], delta: int) -> list[int]:
        with self._lock:
            return self._add(keys, ttls, delta)

    def _add(self, keys: list[str], ttls: list[int], delta: int) -> list[int]:
        now = time.monotonic()
        if len(self._memory) > 100_000:  # counters of windows long over
            self._memory = {key: kept for key, kept in self._memory.items() if kept[1] > now}
        after = []
        for key, ttl in zip(keys, ttls, strict=True):
            if ttl <= 0:
                after.append(0)
                continue
            value = self._current(key) + delta
            self._memory[key] = (value, now + ttl / 1000.0)
            after.append(value)
        return after

    def _current(self, key: str) -> int:
        value, expires = self._memory.get(key, (0, 0.0))
        return value if expires > time.monotonic() else 0


def _starts(now: float) -> tuple[int, ...]:
    """Each window's start (Unix seconds) at `now`."""
    return tuple(int(now // size * size) for _, size in WINDOWS)


def _interleave(limits: list[int], ttls: list[int]) -> list[int]:
    return [value for pair in zip(limits, ttls, strict=True) for value in pair]


def init_token_budgets(app: Flask) -> None:
    """app.extensions["token_budgets"]: on the app's Redis (its pool) when it has one."""
    state = app.extensions.get("redis")
    config = app.config
    app.extensions["token_budgets"] = TokenBudgets(
        state.client if state is not None else None,
        config["CACHE_NAMESPACE"],
        config["WEB_CONCURRENCY"],
        config["REDIS_RETRY_AFTER_S"],
    )
