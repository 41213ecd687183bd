"""Templates endpoints on SQLite and PostgreSQL through the Flask test client."""

import json

import pytest

from tests.support.headers import server_timing


def _create(client, name="greet", body="Hello {{ who }}, welcome to {{place}}!", **extra):
    return client.post("/api/v1/templates", json={"name": name, "body": body, **extra})


def test_create_returns_201_with_location_and_variables(client):
    response = _create(client, description="a greeting")
    assert response.status_code == 201
    item = response.get_json()
    assert response.headers["Location"] == f"/api/v1/templates/{item['id']}"
    assert item["variables"] == ["who", "place"]
    assert item["description"] == "a greeting"
    assert item["created_at"].endswith("+00:00")
    assert client.get(response.headers["Location"]).get_json() == item


def test_show_answers_every_column_in_order_then_the_variables(client):
    created = _create(client, description="a greeting").get_json()
    response = client.get(f"/api/v1/templates/{created['id']}")
    assert response.status_code == 200
    item = json.loads(response.data)
    assert list(item) == [
        "id", "name", "body", "description", "owner_id", "created_at", "updated_at", "variables"
    ]  # fmt: skip
    assert item["name"] == "greet" and item["body"] == "Hello {{ who }}, welcome to {{place}}!"
    assert item["description"] == "a greeting" and item["owner_id"] == created["owner_id"] > 0
    assert item["variables"] == ["who", "place"]
    assert item["created_at"].endswith("+00:00") and item["updated_at"].endswith("+00:00")
    assert client.get("/api/v1/templates/999999").status_code == 404


def test_duplicate_name_is_409(client):
    assert _create(client).status_code == 201
    response = _create(client)
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"


def test_list_is_paginated_with_total(client):
    for index in range(5):
        assert _create(client, name=f"t{index}").status_code == 201
    page = client.get("/api/v1/templates?limit=2&offset=1").get_json()
    assert page["total"] == 5
    assert page["limit"] == 2 and page["offset"] == 1
    assert [item["name"] for item in page["items"]] == ["t1", "t2"]


@pytest.mark.parametrize("query", ["limit=101", "limit=0", "limit=abc", "offset=-1", "limit=1e9"])
def test_bad_pagination_is_422_naming_the_field(client, query):
    response = client.get(f"/api/v1/templates?{query}")
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == query.split("=")[0]


def test_put_replaces_and_patch_changes_only_given_fields(client):
    template_id = _create(client, description="d").get_json()["id"]
    put = client.put(f"/api/v1/templates/{template_id}", json={"name": "n2", "body": "B"})
    assert put.status_code == 200
    assert put.get_json()["description"] == ""
    patch = client.patch(f"/api/v1/templates/{template_id}", json={"description": "new"})
    assert patch.get_json()["name"] == "n2"
    assert patch.get_json()["description"] == "new"


def test_rename_onto_existing_name_is_409(client):
    _create(client, name="a")
    second = _create(client, name="b").get_json()["id"]
    response = client.patch(f"/api/v1/templates/{second}", json={"name": "a"})
    assert response.status_code == 409


def test_delete_then_404(client):
    template_id = _create(client).get_json()["id"]
    assert client.delete(f"/api/v1/templates/{template_id}").status_code == 204
    assert client.get(f"/api/v1/templates/{template_id}").status_code == 404
    assert client.delete(f"/api/v1/templates/{template_id}").status_code == 404


def test_render_fills_variables_and_names_missing_ones(client):
    template_id = _create(client).get_json()["id"]
    url = f"/api/v1/templates/{template_id}/render"
    ok = client.post(url, json={"variables": {"who": "Ada", "place": "Paris"}})
    assert ok.get_json()["text"] == "Hello Ada, welcome to Paris!"
    missing = client.post(url, json={"variables": {"who": "Ada"}})
    assert missing.status_code == 422
    assert missing.get_json()["error"]["missing"] == ["place"]


def test_unicode_identifiers_are_placeholders_and_other_words_are_text(client):
    body = "{{ 名前 }} in {{ ville }}, {{café}} {{ नाम }} {{ _x1 }}; {{ 1x }} {{ a-b }} {{ x² }} {{ 名前 }}"
    created = _create(client, body=body)
    assert created.status_code == 201, created.get_json()
    item = created.get_json()
    assert item["variables"] == ["名前", "ville", "café", "नाम", "_x1"]
    assert client.get(f"/api/v1/templates/{item['id']}").get_json()["variables"] == item["variables"]
    url = f"/api/v1/templates/{item['id']}/render"
    values = {"名前": "Ada", "ville": "Paris", "café": "noir", "नाम": "A", "_x1": 1}
    rendered = client.post(url, json={"variables": values})
    assert rendered.status_code == 200, rendered.get_json()
    assert rendered.get_json()["text"] == "Ada in Paris, noir A 1; {{ 1x }} {{ a-b }} {{ x² }} Ada"
    missing = client.post(url, json={"variables": {"ville": "Paris"}})
    assert missing.status_code == 422
    assert missing.get_json()["error"]["missing"] == ["名前", "café", "नाम", "_x1"]


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"body": "x"}, "name"),
        ({"name": "", "body": "x"}, "name"),
        ({"name": 5, "body": "x"}, "name"),
        ({"name": "x" * 101, "body": "x"}, "name"),
        ({"name": "nul\x00", "body": "x"}, "name"),
        ({"name": "n", "body": ["x"]}, "body"),
        ({"name": "n", "body": "x", "owner": 1}, "owner"),
    ],
)
def test_bad_fields_are_422_naming_the_field(client, payload, field):
    response = client.post("/api/v1/templates", json=payload)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_sql_fragments_and_unicode_are_stored_verbatim(client):
    name = "'; DROP TABLE templates; -- ☃ 𝔘"
    response = _create(client, name=name, body="{{x}} ✓")
    assert response.status_code == 201
    assert client.get(response.headers["Location"]).get_json()["name"] == name
    assert client.get("/api/v1/templates").get_json()["total"] == 1


def test_server_timing_counts_the_database_in_every_view_that_reads_or_writes(shared_client):
    created = _create(shared_client)
    shown = shared_client.get(created.headers["Location"])
    listed = shared_client.get("/api/v1/templates")
    for response in (created, shown, listed):
        spans = server_timing(response)
        assert 0 < spans["db"] <= spans["app"], response.headers["Server-Timing"]
    cached = shared_client.get("/api/v1/templates")
    assert cached.headers["X-Cache"] == "HIT"
    assert "db" not in server_timing(cached)  # served from the cache: no statement ran
    assert "db" not in server_timing(shared_client.get("/health/live"))
