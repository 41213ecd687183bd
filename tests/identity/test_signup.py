"""Sign-up mints keys: its budgets per address (a minute, an hour) and in total (a day), a closed
sign-up, and the "is this email registered" answers kept behind those budgets."""

from __future__ import annotations

import pytest

from appfactory import create_app
from tests.conftest import base_overrides
from tests.support.keys import bearer, issue_key
from tests.support.services import REDIS_URL, require_redis
from tests.support.windows import clear_of_minute_edge

USERS = "/api/v1/users"


@pytest.fixture(params=["memory", "redis"])
def limited(request, new_app):
    """Apps counting their limits in memory (one worker), or in the machine's Redis (as many do)."""
    clear_of_minute_edge()  # exact counts: not across a window's edge
    redis_url = None
    if request.param == "redis":
        require_redis().close()
        redis_url = REDIS_URL
    return lambda **overrides: new_app(REDIS_URL=redis_url, **overrides)


def _sign_up(client, name: str, address: str | None = None, key: str | None = None):
    extra = {"environ_base": {"REMOTE_ADDR": address}} if address else {}
    body = {"email": f"{name}@example.com", "name": name}
    return client.post(USERS, json=body, headers=bearer(key) if key else {}, **extra)


def test_one_address_gets_its_hourly_sign_ups_then_429(limited):
    client = limited(RATE_LIMIT_SIGNUPS_PER_MINUTE=1000, RATE_LIMIT_SIGNUPS_PER_HOUR=None).test_client()
    answers = [_sign_up(client, f"u{n}", "198.51.100.1") for n in range(12)]  # the default: 10 an hour
    assert [answer.status_code for answer in answers] == [201] * 10 + [429] * 2
    refused = answers[-1]
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert refused.headers["RateLimit-Policy"] == '"signup-hour";q=10;w=3600'
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert _sign_up(client, "elsewhere", "198.51.100.2").status_code == 201  # another address's budget


def test_the_whole_service_signs_up_at_most_its_daily_total(limited):
    client = limited(SIGNUPS_PER_DAY=3).test_client()
    answers = [_sign_up(client, f"u{n}", f"198.51.100.{n + 1}") for n in range(4)]  # one each
    assert [answer.status_code for answer in answers] == [201, 201, 201, 429]
    assert answers[-1].headers["RateLimit-Policy"] == '"signup-total";q=3;w=86400'
    assert client.get("/api/v1/templates").status_code == 200  # only sign-ups are closed


def test_a_key_presented_at_sign_up_buys_no_new_budget(limited):
    client = limited(RATE_LIMIT_SIGNUPS_PER_MINUTE=3).test_client()
    key, statuses = None, []
    for n in range(4):  # each sign-up presents the key the one before it minted
        answer = _sign_up(client, f"u{n}", key=key)
        statuses.append(answer.status_code)
        key = (answer.get_json() or {}).get("api_key", key)
    assert statuses == [201, 201, 201, 429]


def test_closed_sign_up_is_403_and_leaves_the_cli_and_admins_as_the_way_in(new_app):
    app = new_app(SIGNUP_ENABLED=False, RATE_LIMIT_SIGNUPS_PER_HOUR=1)
    client = app.test_client()
    user_key = issue_key(app.config["DATABASE_URL"], admin=False)
    for body, headers in (({"email": "a@example.com", "name": "A"}, {}), ({}, {}), ({}, bearer(user_key))):
        refused = client.post(USERS, json=body, headers=headers)
        assert refused.status_code == 403
        assert refused.get_json()["error"]["code"] == "signup_disabled"
    made = app.test_cli_runner().invoke(
        args=["users", "create", "--email", "Ada@example.com", "--name", "Ada"]
    )
    assert made.exit_code == 0, made.output
    ada_key, ada_id = made.stdout.strip(), made.stderr.split()[1]  # "user 3 created ..."
    ada = client.patch(f"{USERS}/{ada_id}", json={"name": "Ada L."}, headers=bearer(ada_key))
    assert ada.status_code == 200 and ada.get_json()["email"] == "ada@example.com"
    admin_key = issue_key(app.config["DATABASE_URL"])  # as `flask keys create --admin` makes it
    created = [_sign_up(client, f"staff{n}", key=admin_key) for n in range(3)]
    assert [answer.status_code for answer in created] == [201] * 3  # an admin spends no sign-up budget
    again = app.test_cli_runner().invoke(
        args=["users", "create", "--email", "ada@example.com", "--name", "A"]
    )
    assert again.exit_code != 0 and "already exists" in again.output


def test_a_taken_email_is_told_only_within_the_sign_up_budget(database_url):
    clear_of_minute_edge()
    app = create_app(base_overrides(DATABASE_URL=database_url, RATE_LIMIT_SIGNUPS_PER_HOUR=3))
    try:
        client = app.test_client()
        answers = [_sign_up(client, "ada") for _ in range(4)]
        assert [answer.status_code for answer in answers] == [201, 409, 409, 429]
        assert "ada@" not in answers[1].get_data(as_text=True)
    finally:
        app.extensions["db"].dispose()


def test_changing_ones_email_spends_the_same_budget(database_url):
    clear_of_minute_edge()
    app = create_app(base_overrides(DATABASE_URL=database_url, RATE_LIMIT_SIGNUPS_PER_HOUR=4))
    try:
        client = app.test_client()
        admin = bearer(issue_key(database_url))
        assert (
            client.post(USERS, json={"email": "bob@example.com", "name": "Bob"}, headers=admin).status_code
            == 201
        )
        ada = _sign_up(client, "ada").get_json()  # 1 of 4
        path, key = f"{USERS}/{ada['id']}", bearer(ada["api_key"])
        conflict = client.patch(path, json={"email": "bob@example.com"}, headers=key)  # 2
        assert conflict.status_code == 409 and "bob" not in conflict.get_data(as_text=True)
        for n in (3, 4):
            assert client.patch(path, json={"email": f"ada{n}@example.com"}, headers=key).status_code == 200
        spent = client.patch(path, json={"email": "bob@example.com"}, headers=key)
        assert spent.status_code == 429 and spent.get_json()["error"]["code"] == "rate_limited"
        assert 1 <= int(spent.headers["Retry-After"]) <= 3600
        assert client.patch(path, json={"name": "Ada L."}, headers=key).status_code == 200  # no email: free
        assert _sign_up(client, "eve").status_code == 429  # one budget for both
        assert client.patch(path, json={"email": "bob@example.com"}, headers=admin).status_code == 409
    finally:
        app.extensions["db"].dispose()
