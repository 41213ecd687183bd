"""Tokens: what a model call may cost, what it did cost, and the caller's budget in between.

A `Meter` goes with each model call (the guard holds it): before the call it reserves the worst case
(the prompt's estimate + max_tokens) against the caller's token budget (appfactory/ratelimit/tokens.py),
after it settles what the call used. The model server's own figures count where it reports them;
otherwise, and for the `local` provider, the estimate: a token is about four characters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from flask import current_app, has_request_context

from appfactory.identity.context import current_credentials
from appfactory.observability.metrics import count_tokens
from appfactory.ratelimit import client_key
from appfactory.ratelimit.tokens import Budget, BudgetSpent, Reservation
from appfactory.web.errors import ApiError
from blueprints.ai.providers.base import Usage


def estimate(text: str) -> int:
    """Tokens in `text`, about four characters each (no tokenizer: the model's is not known here)."""
    return math.ceil(len(text) / 4)


def estimate_prompt(texts: Iterable[str]) -> int:
    return sum(estimate(text) for text in texts)


def as_fields(usage: Usage, estimated: bool, upstream: bool) -> dict[str, Any]:
    """The `usage` object of an answer: what the model charged when the answer was made, whether
    those are estimates, and what this request spent upstream (0: a cached answer)."""
    total = usage.prompt_tokens + usage.completion_tokens
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": total,
        "estimated": estimated,
        "upstream_tokens": total if upstream else 0,
    }


def fields_of(kept: dict[str, Any], cached: bool) -> dict[str, Any]:
    """The `usage` object of an answer from what its entry kept (`Meter.kept`)."""
    figures = Usage(kept["prompt_tokens"], kept["completion_tokens"])
    return as_fields(figures, estimated=kept.get("estimated", True), upstream=not cached)


def caller_budget() -> Budget:
    """The presented key's own budgets where it has them, else AI_TOKENS_PER_MINUTE / _PER_DAY."""
    config = current_app.config
    per_minute, per_day = config["AI_TOKENS_PER_MINUTE"], config["AI_TOKENS_PER_DAY"]
    credentials = current_credentials()
    record = credentials.record if credentials is not None and credentials.caller is not None else None
    if record is not None:
        per_minute = record.tokens_per_minute or per_minute
        per_day = record.tokens_per_day or per_day
    return Budget(per_minute, per_day)


class Meter:
    """One model call's tokens: `reserve` before it, then `settle` once (a failure: `settle(None, "")`
    with nothing received charges nothing)."""

    def __init__(self, model: str, prompt_tokens: int, max_tokens: int) -> None:
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.usage: Usage | None = None  # what the call used, once settled
        self.estimated = True
        self._held: Reservation | None = None
        self._budgets = None  # kept: a stream settles from its response's close, after the request

    def kept(self) -> dict[str, Any]:
        """What a cache entry keeps of the settled usage (`fields_of` answers from it)."""
        return {**self.usage._asdict(), "estimated": self.estimated}

    def reserve(self) -> None:
        """Hold the worst case, or refuse the call: 429 when the budget is spent. Outside a request
        (`flask ai warm`) the operator calls: no budget, the use counted as the operator's."""
        self._budgets = budgets = current_app.extensions["token_budgets"]
        who, budget = (
            ("key:operator", Budget()) if not has_request_context() else (client_key(), caller_budget())
        )
        try:
            self._held = budgets.reserve(who, budget, self.prompt_tokens + self.max_tokens)
        except BudgetSpent as spent:
            raise _refusal(spent) from None

    def settle(self, reported: Usage | None, text: str | None) -> Usage:
        """The call is over: it used `reported` (the model server's figures), else the estimate of
        the prompt and of `text`, what it sent (None: it failed before sending anything: nothing)."""
        if self.usage is not None:
            return self.usage
        if reported is not None:
            self.usage, self.estimated = reported, False
        elif text is None:
            self.usage = Usage(0, 0)
        else:
            self.usage = Usage(self.prompt_tokens, estimate(text))
        spent = self.usage.prompt_tokens + self.usage.completion_tokens
        if spent:
            count_tokens(self.model, self.usage.prompt_tokens, self.usage.completion_tokens)
        if self._held is not None:
            self._budgets.settle(self._held, spent)
        return self.usage


def _refusal(spent: BudgetSpent) -> ApiError:
    if spent.retry_in is None:
        return ApiError(
            429,
            f"This request may use {spent.amount} tokens, more than the key's whole {spent.policy} budget "
            f"of {spent.limit}; ask for fewer max_tokens or a shorter prompt.",
            "token_budget_exceeded",
            budget=spent.policy,
        )
    return ApiError(
        429,
        f"Token budget of {spent.limit} per {_window_name(spent.policy)} spent; retry in {spent.retry_in} s.",
        "token_budget_exceeded",
        retry_after=spent.retry_in,
        budget=spent.policy,
    )


def _window_name(policy: str) -> str:
    return "day" if policy == "tokens-day" else "minute"
