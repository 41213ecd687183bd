"""API keys through the test client, on SQLite and PostgreSQL: who may write what, who sees an
email, what is refused, and what never leaves the service."""

from __future__ import annotations

import glob
import itertools
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, update

from appfactory import create_app
from appfactory.config import ConfigError, sqlalchemy_url
from appfactory.db.models import api_keys, templates, utcnow
from appfactory.identity import store, tokens
from appfactory.identity.hooks import UNAUTHORIZED
from tests.conftest import base_overrides
from tests.support.keys import bearer, issue_key
from tests.support.windows import clear_of_minute_edge

GENERATE = "/api/v1/ai/generate"


class World:
    """Two users with their first keys, an admin key, A's template and an ownerless one."""

    def __init__(self, app) -> None:
        self.app = app
        self.client = app.test_client()
        self.a_id, self.a_key = self._user("a@example.com", "A")
        self.b_id, self.b_key = self._user("b@example.com", "B")
        self.admin_key = issue_key(app.config["DATABASE_URL"])
        created = self.client.post(
            "/api/v1/templates", json={"name": "a-template", "body": "Hi {{ who }}"}, headers=self.a()
        )
        assert created.status_code == 201, created.get_json()
        self.template = created.get_json()["id"]
        self.ownerless = self.client.post(
            "/api/v1/templates", json={"name": "old", "body": "b"}, headers=self.admin()
        ).get_json()["id"]
        with app.extensions["db"].begin() as conn:  # as rows from before API keys are
            conn.execute(update(templates).where(templates.c.id == self.ownerless).values(owner_id=None))

    def _user(self, email: str, name: str) -> tuple[int, str]:
        response = self.client.post("/api/v1/users", json={"email": email, "name": name})
        assert response.status_code == 201 and response.headers["Cache-Control"] == "no-store"
        body = response.get_json()
        return body["id"], body["api_key"]

    def a(self) -> dict:
        return bearer(self.a_key)

    def b(self) -> dict:
        return bearer(self.b_key)

    def admin(self) -> dict:
        return bearer(self.admin_key)


@pytest.fixture
def world(database_url):
    app = create_app(base_overrides(DATABASE_URL=database_url, AI_ALLOW_ANONYMOUS=None))
    yield World(app)
    app.extensions["db"].dispose()


# Every write route, with who owns what it writes ("a": user A, None: anyone with a key may).
WRITES = [
    ("PATCH", "/api/v1/users/{a_id}", {"name": "A2"}, "a"),
    ("DELETE", "/api/v1/users/{a_id}", None, "a"),
    ("POST", "/api/v1/templates", {"name": "new", "body": "b"}, None),
    ("PUT", "/api/v1/templates/{template}", {"name": "a-template", "body": "Hello"}, "a"),
    ("PATCH", "/api/v1/templates/{template}", {"description": "d"}, "a"),
    ("DELETE", "/api/v1/templates/{template}", None, "a"),
    ("POST", GENERATE, {"prompt": "tea"}, None),
    ("GET", GENERATE + "?prompt=tea", None, None),
]


def _refusals(world, method, path, body):
    """What a write answers to no key, a malformed key, an unknown one, and a wrong secret."""
    wrong_secret = world.a_key[:-4] + ("AAAA" if not world.a_key.endswith("AAAA") else "BBBB")
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Basic {world.a_key}"},
        bearer(f"aig_99999_{'x' * 43}"),
        bearer(wrong_secret),
    ):
        yield world.client.open(path, method=method, json=body, headers=headers)


@pytest.mark.parametrize("method, path, body, owner", WRITES, ids=[f"{m} {p}" for m, p, _, _ in WRITES])
def test_401_and_403_exactly_where_they_belong(world, method, path, body, owner):
    path = path.format(a_id=world.a_id, template=world.template)
    for refused in _refusals(world, method, path, body):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.get_json() == {"error": {"code": "unauthorized", "message": UNAUTHORIZED}}
    if owner is not None:
        forbidden = world.client.open(path, method=method, json=body, headers=world.b())
        assert forbidden.status_code == 403
        assert forbidden.get_json()["error"]["code"] == "forbidden"
    allowed = world.client.open(path, method=method, json=body, headers=world.a())
    assert allowed.status_code in (200, 201, 204), allowed.get_json()


def test_an_admin_key_writes_anything_and_only_admins_write_what_no_one_owns(world):
    client = world.client
    ownerless = f"/api/v1/templates/{world.ownerless}"
    assert client.patch(ownerless, json={"description": "x"}, headers=world.a()).status_code == 403
    assert client.patch(ownerless, json={"description": "x"}, headers=world.admin()).status_code == 200
    template = f"/api/v1/templates/{world.template}"
    assert client.put(template, json={"name": "t2", "body": "b"}, headers=world.admin()).status_code == 200
    assert (
        client.patch(f"/api/v1/users/{world.a_id}", json={"name": "Z"}, headers=world.admin()).status_code
        == 200
    )
    assert client.delete(ownerless, headers=world.admin()).status_code == 204
    assert client.delete(f"/api/v1/users/{world.b_id}", headers=world.admin()).status_code == 204
    # B's key went with B
    assert (
        client.post("/api/v1/templates", json={"name": "b", "body": "b"}, headers=world.b()).status_code
        == 401
    )


def test_a_new_template_belongs_to_its_creator(world):
    created = world.client.post("/api/v1/templates", json={"name": "mine", "body": "b"}, headers=world.b())
    assert created.get_json()["owner_id"] == world.b_id
    path = created.headers["Location"]
    assert world.client.delete(path, headers=world.a()).status_code == 403
    assert world.client.delete(path, headers=world.b()).status_code == 204


def test_expired_and_revoked_keys_get_the_same_401(world):
    expired = issue_key(world.app.config["DATABASE_URL"], admin=False, user_id=world.a_id)
    with world.app.extensions["db"].begin() as conn:
        key_id = int(expired.split("_")[1])
        conn.execute(
            update(api_keys).where(api_keys.c.id == key_id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    runner = world.app.test_cli_runner()
    assert runner.invoke(args=["keys", "revoke", world.a_key.split("_")[1]]).exit_code == 0
    for token in (expired, world.a_key):
        response = world.client.post(GENERATE, json={"prompt": "tea"}, headers=bearer(token))
        assert response.status_code == 401
        assert response.get_json()["error"]["message"] == UNAUTHORIZED


@pytest.mark.parametrize("shared", [False, True], ids=["own-cache", "redis"])
def test_b_never_sees_as_email_in_any_order_cache_warm_or_cold(database_url, shared):
    from tests.support.services import REDIS_URL, require_redis

    if shared:
        require_redis().close()
    overrides = base_overrides(DATABASE_URL=database_url, REDIS_URL=REDIS_URL if shared else None)
    app = create_app(overrides)
    try:
        world = World(app)
        profile = f"/api/v1/users/{world.a_id}"
        viewers = {"anonymous": {}, "b": world.b(), "a": world.a(), "admin": world.admin()}
        cache = app.extensions["response_cache"]
        for order in itertools.permutations(viewers):
            cache.invalidate("user", "*")  # cold at the start of each order, warm after its first
            for viewer in order:
                response = world.client.get(profile, headers=viewers[viewer])
                assert response.status_code == 200
                sees = "email" in response.get_json()
                assert sees == (viewer in ("a", "admin")), (order, viewer)
                if sees:
                    assert response.headers["Cache-Control"] == "no-store"
                    assert response.get_json()["email"] == "a@example.com"
        if shared:
            assert world.client.get(profile).headers["X-Cache"] == "HIT"
    finally:
        app.extensions["db"].dispose()
        if shared:
            app.extensions["redis"].client.close()


def _dump(database_url: str) -> bytes:
    """Every byte the database holds: pg_dump's output, or the SQLite files."""
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        return b"".join(Path(name).read_bytes() for name in glob.glob(path + "*"))
    pg_dump = shutil.which("pg_dump") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_dump"))), None
    )
    if pg_dump is None:
        pytest.fail("pg_dump is not installed")
    done = subprocess.run(
        [pg_dump, "--data-only", database_url],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_a_dump_of_the_database_holds_no_key_in_plain_text(world, database_url):
    runner = world.app.test_cli_runner()
    minted = runner.invoke(args=["keys", "create", "--user", str(world.a_id), "--admin"]).output.split()[0]
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.begin() as conn:  # a write after the keys, so SQLite's WAL has moved on
        conn.execute(insert(templates).values(name="after", body="b", description=""))
    engine.dispose()
    dump = _dump(database_url)
    assert b"a@example.com" in dump  # the dump is real: it holds the users
    for token in (world.a_key, world.b_key, world.admin_key, minted):
        secret = token.split("_", 2)[2]
        assert secret.encode() not in dump and secret[8:].encode() not in dump
        assert tokens.hash_secret(secret).encode() in dump  # only the hash


def test_a_key_in_the_query_string_is_refused_never_honoured(world):
    for query in (f"prompt=tea&api_key={world.a_key}", f"prompt={world.a_key}", "prompt=tea&access_token=x"):
        response = world.client.get(f"{GENERATE}?{query}")
        assert response.status_code == 400
        assert "Authorization header" in response.get_json()["error"]["message"]


def test_two_keys_behind_one_address_have_separate_budgets(database_url):
    clear_of_minute_edge()  # exact counts: not across a window's edge
    app = create_app(base_overrides(DATABASE_URL=database_url, RATE_LIMIT_PER_MINUTE=3))
    try:
        world_keys = [issue_key(database_url, admin=False) for _ in range(2)]
        client = app.test_client()
        for token in world_keys:
            statuses = [client.get("/api/v1/templates", headers=bearer(token)).status_code for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
    finally:
        app.extensions["db"].dispose()


def test_sign_ups_have_a_tight_budget_of_their_own(new_app):
    clear_of_minute_edge()  # exact counts: not across a window's edge
    app = new_app(RATE_LIMIT_SIGNUPS_PER_MINUTE=None)  # the default, 5 a minute
    client = app.test_client()
    answers = [
        client.post("/api/v1/users", json={"email": f"u{n}@example.com", "name": "U"}) for n in range(7)
    ]
    assert [answer.status_code for answer in answers] == [201] * 5 + [429] * 2
    assert answers[-1].headers["RateLimit-Policy"] == '"signup";q=5;w=60'
    assert client.get("/api/v1/templates").status_code == 200  # the default budget is untouched


def test_wrong_keys_from_one_address_end_in_429(database_url):
    clear_of_minute_edge()  # exact counts: not across a window's edge
    app = create_app(base_overrides(DATABASE_URL=database_url))
    try:
        client = app.test_client()
        answers = [
            client.get("/api/v1/templates", headers=bearer(f"aig_{n + 1}_{'y' * 43}")) for n in range(60)
        ]
        statuses = [answer.status_code for answer in answers]
        assert statuses == [401] * 10 + [429] * 50
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert answers[-1].get_json()["error"]["code"] == "rate_limited"
        # the address's own budget for good requests is untouched by the failures' budget
        assert client.get("/api/v1/templates").status_code == 200
    finally:
        app.extensions["db"].dispose()


def test_anonymous_generation_is_401_by_default_and_200_when_opted_in(database_url):
    for allowed, status in ((None, 401), (True, 200)):
        app = create_app(base_overrides(DATABASE_URL=database_url, AI_ALLOW_ANONYMOUS=allowed))
        try:
            client = app.test_client()
            assert client.get(f"{GENERATE}?prompt=tea").status_code == status
            assert client.post(GENERATE, json={"prompt": "tea"}).status_code == status
        finally:
            app.extensions["db"].dispose()


def test_only_the_models_the_operator_allows(new_app):
    client = new_app().test_client()
    refused = client.get(f"{GENERATE}?prompt=tea&model=gpt-4o")
    assert refused.status_code == 422
    assert (
        refused.get_json()["error"]["field"] == "model"
        and "'gpt-4o'" in refused.get_json()["error"]["message"]
    )
    assert client.get(f"{GENERATE}?prompt=tea&model=local-echo").status_code == 200
    offered = new_app(AI_MODELS="small, large").test_client()
    assert offered.post(GENERATE, json={"prompt": "tea", "model": "large"}).status_code == 200
    assert offered.post(GENERATE, json={"prompt": "tea", "model": "local-echo"}).status_code == 422


@pytest.mark.parametrize("scope, b_sees", [("shared", "HIT"), ("user", "MISS")])
def test_the_ai_cache_is_shared_or_per_user(new_app, scope, b_sees):
    app = new_app(AI_CACHE_SCOPE=scope, AI_ALLOW_ANONYMOUS=None)
    world = World(app)
    path = f"{GENERATE}?prompt=scoped"
    assert world.client.get(path, headers=world.a()).headers["X-Cache"] == "MISS"
    assert world.client.get(path, headers=world.a()).headers["X-Cache"] == "HIT"
    assert world.client.get(path, headers=world.b()).headers["X-Cache"] == b_sees


def test_every_response_says_nosniff_and_answers_to_a_key_say_no_store(world):
    for response in (
        world.client.get("/health/live"),
        world.client.get("/api/v1/nowhere"),
        world.client.get("/api/v1/templates"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Cache-Control" not in response.headers
    keyed = world.client.get("/api/v1/templates", headers=world.a())
    assert keyed.headers["Cache-Control"] == "no-store"


def test_no_debug_mode_from_the_environment(new_app, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = new_app()
    assert app.debug is False

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert b"secret detail" not in response.data and b"Traceback" not in response.data


def test_cors_is_off_unless_origins_are_named(new_app):
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    }
    off = new_app().test_client().options("/api/v1/templates", headers=preflight)
    assert "Access-Control-Allow-Origin" not in off.headers
    on = new_app(CORS_ORIGINS="https://app.example.com").test_client()
    allowed = on.options("/api/v1/templates", headers=preflight)
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    patch = on.options("/api/v1/users/1", headers={**preflight, "Access-Control-Request-Method": "PATCH"})
    assert patch.status_code == 204 and "PATCH" in patch.headers["Access-Control-Allow-Methods"]
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    other = on.get("/api/v1/templates", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        new_app(CORS_ORIGINS="*")


def test_the_cli_shows_a_secret_once_and_lists_keys_by_id(world):
    runner = world.app.test_cli_runner()
    created = runner.invoke(
        args=["keys", "create", "--user", str(world.b_id), "--admin", "--expires-in-days", "30"]
    )
    assert created.exit_code == 0
    token = created.stdout.strip()
    key_id = int(token.split("_")[1])
    assert (
        world.client.patch(
            f"/api/v1/users/{world.a_id}", json={"name": "Q"}, headers=bearer(token)
        ).status_code
        == 200
    )
    listed = runner.invoke(args=["keys", "list", "--user", str(world.b_id)]).output.splitlines()
    assert [line.split()[0] for line in listed] == [world.b_key.split("_")[1], str(key_id)]
    assert listed[1].split()[1] == f"aig_{key_id}_{token.split('_', 2)[2][:4]}…"
    assert "admin=yes" in listed[1] and "admin=no" in listed[0] and "last_used=never" not in listed[1]
    assert all(token.split("_", 2)[2] not in line for line in listed)
    assert runner.invoke(args=["keys", "revoke", str(key_id)]).exit_code == 0
    assert (
        "revoked=never"
        not in runner.invoke(args=["keys", "list", "--user", str(world.b_id)]).output.splitlines()[1]
    )
    assert runner.invoke(args=["keys", "revoke", "999999"]).exit_code != 0
    assert runner.invoke(args=["keys", "create", "--user", "999999"]).exit_code != 0


def test_tokens_parse_only_their_own_shape():
    assert tokens.parse("aig_12_" + "a" * 43).key_id == 12
    for bad in (
        "",
        "aig_12_short",
        "aig_0_" + "a" * 43,
        "aig_x_" + "a" * 43,
        "xyz_1_" + "a" * 43,
        "aig_1_" + "a" * 43 + "\x00",
    ):
        assert tokens.parse(bad) is None
    assert tokens.same_hash(tokens.hash_secret("s"), tokens.hash_secret("s"))
    assert not tokens.same_hash(tokens.hash_secret("s"), tokens.hash_secret("t"))


def test_a_hit_with_a_remembered_key_costs_the_one_round_trip_and_no_statement(new_app):
    from tests.support.headers import server_timing
    from tests.support.services import RedisServer
    from tests.test_readahead import _client_commands

    server = RedisServer().start()
    try:
        app = new_app(REDIS_URL=server.url, AI_ALLOW_ANONYMOUS=None)
        key = bearer(issue_key(app.config["DATABASE_URL"], admin=False))
        client = app.test_client()
        path = f"{GENERATE}?prompt=remembered"
        first = [client.get(path, headers=key) for _ in range(3)]  # read, then remembered
        assert [r.headers["X-Cache"] for r in first] == ["MISS", "HIT", "HIT"]
        hits = []
        commands = _client_commands(
            server.url, lambda: hits.extend(client.get(path, headers=key) for _ in range(5))
        )
        assert [r.headers["X-Cache"] for r in hits] == ["HIT"] * 5
        assert all("db" not in server_timing(r) for r in hits)
        assert commands["EVALSHA"] == 5 and commands["GET"] == 0, commands
        # a revocation (here: by the CLI) is seen in that same round trip
        key_id = key["Authorization"].split("_")[1]
        assert app.test_cli_runner().invoke(args=["keys", "revoke", key_id]).exit_code == 0
        assert client.get(path, headers=key).status_code == 401
    finally:
        server.close()


def test_the_cli_says_a_user_does_not_exist_when_listing_as_when_creating(app, runner):
    for command in ("list", "create"):
        result = runner.invoke(args=["keys", command, "--user", "99"])
        assert result.exit_code == 1, (command, result.output)
        assert "user 99 does not exist" in result.output, command
    user_id = app.test_client().post("/api/v1/users", json={"email": "k@example.com", "name": "K"})
    user_id = user_id.get_json()["id"]
    listed = runner.invoke(args=["keys", "list", "--user", str(user_id)])
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 1  # the sign-up's key


def _budgets(runner, user_id: int) -> dict[str, str]:
    """`flask keys list`'s last two fields of each key: {key id: "tokens_per_minute=… tokens_per_day=…"}."""
    listed = runner.invoke(args=["keys", "list", "--user", str(user_id)])
    assert listed.exit_code == 0, listed.output
    return {line.split()[0]: " ".join(line.split()[-2:]) for line in listed.stdout.splitlines()}


def test_the_cli_gives_a_key_token_budgets_changes_and_clears_them(world):
    runner = world.app.test_cli_runner()
    budgets = ["--tokens-per-minute", "500", "--tokens-per-day", "20000"]
    created = runner.invoke(args=["keys", "create", "--user", str(world.b_id), *budgets])
    assert created.exit_code == 0, created.output
    key_id = created.stdout.strip().split("_")[1]
    signup_key = world.b_key.split("_")[1]
    assert _budgets(runner, world.b_id) == {
        signup_key: "tokens_per_minute=default tokens_per_day=default",
        key_id: "tokens_per_minute=500 tokens_per_day=20000",
    }
    with world.app.extensions["db"].connect() as conn:
        record = store.find(conn, int(key_id))
    assert record[-2:] == (500, 20000) and (record.tokens_per_minute, record.tokens_per_day) == (500, 20000)
    changed = runner.invoke(args=["keys", "budget", key_id, "--tokens-per-minute", "900"])
    assert changed.exit_code == 0, changed.output
    assert changed.stdout.strip() == f"key {key_id}: tokens_per_minute=900 tokens_per_day=20000"
    assert _budgets(runner, world.b_id)[key_id] == "tokens_per_minute=900 tokens_per_day=20000"
    cleared = runner.invoke(args=["keys", "budget", key_id, "--tokens-per-day", "default"])
    assert cleared.exit_code == 0, cleared.output
    assert _budgets(runner, world.b_id)[key_id] == "tokens_per_minute=900 tokens_per_day=default"
    both = ["keys", "budget", signup_key, "--tokens-per-minute", "7", "--tokens-per-day", "70"]
    assert runner.invoke(args=both).exit_code == 0
    assert runner.invoke(args=["keys", "budget", key_id, "--tokens-per-minute", "default"]).exit_code == 0
    assert _budgets(runner, world.b_id) == {
        signup_key: "tokens_per_minute=7 tokens_per_day=70",
        key_id: "tokens_per_minute=default tokens_per_day=default",
    }
    issued = issue_key(world.app.config["DATABASE_URL"], user_id=world.a_id, tokens_per_minute=3)
    assert _budgets(runner, world.a_id)[issued.split("_")[1]] == "tokens_per_minute=3 tokens_per_day=default"


def test_the_cli_refuses_a_budget_for_no_key_without_a_budget_or_not_a_number(world):
    runner = world.app.test_cli_runner()
    unknown = runner.invoke(args=["keys", "budget", "999999", "--tokens-per-minute", "5"])
    assert unknown.exit_code == 1 and "key 999999 does not exist" in unknown.output
    key_id = world.b_key.split("_")[1]
    nothing = runner.invoke(args=["keys", "budget", key_id])
    assert nothing.exit_code == 1 and "--tokens-per-minute" in nothing.output
    for bad in ("0", "-3", "lots", str(2**31)):
        refused = runner.invoke(args=["keys", "budget", key_id, "--tokens-per-day", bad])
        assert refused.exit_code == 2, (bad, refused.output)
        create = ["keys", "create", "--user", str(world.b_id), "--tokens-per-minute", bad]
        created = runner.invoke(args=create)
        assert created.exit_code == 2, (bad, created.output)
    assert _budgets(runner, world.b_id) == {key_id: "tokens_per_minute=default tokens_per_day=default"}


def test_a_budget_change_reaches_workers_that_remember_the_key(new_app, monkeypatch):
    from appfactory.identity import verifier
    from tests.support.services import RedisServer

    read = []  # the key ids each worker read from the database
    find = verifier._find
    monkeypatch.setattr(verifier, "_find", lambda key_id: read.append(key_id) or find(key_id))
    server = RedisServer().start()
    try:
        app = new_app(REDIS_URL=server.url, AI_ALLOW_ANONYMOUS=None)
        token = issue_key(app.config["DATABASE_URL"], admin=False)
        key, key_id = bearer(token), token.split("_")[1]
        client = app.test_client()
        for _ in range(3):  # read, read and remembered, remembered
            assert client.get("/api/v1/templates", headers=key).status_code == 200
        read.clear()
        assert client.get("/api/v1/templates", headers=key).status_code == 200 and read == []
        runner = app.test_cli_runner()
        assert runner.invoke(args=["keys", "budget", key_id, "--tokens-per-minute", "50"]).exit_code == 0
        assert client.get("/api/v1/templates", headers=key).status_code == 200
        assert read == [int(key_id)]  # read again, with its new budget
        monkeypatch.setattr(app.extensions["identity"], "revoked", lambda: False)
        untold = runner.invoke(args=["keys", "budget", key_id, "--tokens-per-minute", "default"])
        assert untold.exit_code == 1 and "Redis could not be told" in untold.output
    finally:
        server.close()
