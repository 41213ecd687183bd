"""Token budgets' counters: reserve and settle in Redis, in memory, and while Redis is away."""

from __future__ import annotations

import threading

import pytest
import redis
from flask import Flask
from redis.crc import key_slot

from appfactory.ratelimit.tokens import Budget, BudgetSpent, TokenBudgets
from tests.conftest import key_namespace
from tests.support.services import delete_namespace, require_redis


@pytest.fixture
def context():
    with Flask(__name__).app_context():
        yield


@pytest.fixture
def shared():
    client = require_redis()
    namespace = key_namespace()
    yield TokenBudgets(client, namespace, workers=4, retry_after=2.0)
    delete_namespace(client, namespace)
    client.close()


def test_in_memory_a_reservation_holds_until_settled_and_gives_the_rest_back(context):
    budgets = TokenBudgets(None, key_namespace(), workers=1, retry_after=2.0)
    budget = Budget(per_minute=100)
    first = budgets.reserve("key:1", budget, 60)
    with pytest.raises(BudgetSpent) as spent:
        budgets.reserve("key:1", budget, 60)
    assert spent.value.policy == "tokens" and spent.value.limit == 100 and 1 <= spent.value.retry_in <= 60
    budgets.reserve("key:2", budget, 60)  # another client's budget is its own
    budgets.settle(first, 10)
    budgets.settle(first, 99)  # settled once: a second settlement changes nothing
    budgets.reserve("key:1", budget, 60)
    assert budgets.usage("key:1") == {"tokens": 70, "tokens-day": 70}


def test_a_request_larger_than_the_budget_can_never_fit(context):
    budgets = TokenBudgets(None, key_namespace(), workers=1, retry_after=2.0)
    with pytest.raises(BudgetSpent) as spent:
        budgets.reserve("key:1", Budget(per_minute=1000, per_day=50), 51)
    assert (spent.value.policy, spent.value.retry_in) == ("tokens-day", None)


def test_without_a_budget_nothing_is_held_but_the_use_is_counted(context, shared):
    held = shared.reserve("key:1", Budget(), 10_000)
    shared.settle(held, 42)
    assert shared.usage("key:1") == {"tokens": 42, "tokens-day": 42}


def test_concurrent_reservations_in_redis_never_pass_the_budget(context, shared):
    budget, admitted, lock = Budget(per_minute=100, per_day=1000), [], threading.Lock()
    barrier = threading.Barrier(30)

    def reserve() -> None:
        with Flask(__name__).app_context():
            barrier.wait()
            try:
                shared.reserve("key:7", budget, 10)
            except BudgetSpent:
                return
            with lock:
                admitted.append(1)

    threads = [threading.Thread(target=reserve) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 10
    assert shared.usage("key:7") == {"tokens": 100, "tokens-day": 100}


def test_while_redis_is_away_each_worker_holds_its_share(context):
    away = redis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    budgets = TokenBudgets(away, key_namespace(), workers=4, retry_after=30.0)
    held = budgets.reserve("key:1", Budget(per_minute=100), 25)  # 100 ÷ 4 workers
    assert not held.shared
    with pytest.raises(BudgetSpent) as spent:
        budgets.reserve("key:1", Budget(per_minute=100), 1)
    assert spent.value.limit == 25
    budgets.settle(held, 5)  # settled where it was held: this worker's memory
    budgets.reserve("key:1", Budget(per_minute=100), 20)


def test_a_clients_counters_share_one_hash_slot_for_cluster(shared):
    keys, _ = shared._counters("key:9", (60, 86_400), 61.0)
    assert len(keys) == 2 and len({key_slot(key.encode()) for key in keys}) == 1
