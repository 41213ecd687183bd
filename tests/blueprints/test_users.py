"""Users endpoints on SQLite and PostgreSQL through the Flask test client."""

import pytest

from tests.support.headers import server_timing


def _create(client, email="ada@example.com", name="Ada"):
    return client.post("/api/v1/users", json={"email": email, "name": name})


def test_create_then_show(client):
    response = _create(client, email="Ada@Example.com")
    assert response.status_code == 201
    user = response.get_json()
    assert user["email"] == "ada@example.com"
    assert response.headers["Location"] == f"/api/v1/users/{user['id']}"
    assert user.pop("api_key").startswith(f"aig_{user['id']}_")
    assert client.get(response.headers["Location"]).get_json() == user


def test_server_timing_counts_the_database_until_the_profile_is_cached(shared_app, shared_client):
    created = _create(shared_client)
    location = created.headers["Location"]
    anonymous = shared_app.test_client()  # no key to read: the profile's reads alone
    first, second = anonymous.get(location), anonymous.get(location)
    changed = shared_client.patch(location, json={"name": "Ada L."})
    for response in (created, first, changed):
        spans = server_timing(response)
        assert 0 < spans["db"] <= spans["app"], response.headers["Server-Timing"]
    assert second.headers["X-Cache"] == "HIT" and "db" not in server_timing(second)


def test_duplicate_email_is_409_whatever_the_case(client):
    assert _create(client).status_code == 201
    response = _create(client, email="ADA@example.com")
    assert response.status_code == 409
    assert response.get_json()["error"]["field"] == "email"


def test_patch_changes_name_and_keeps_email(client):
    user_id = _create(client).get_json()["id"]
    response = client.patch(f"/api/v1/users/{user_id}", json={"name": "Ada L."})
    assert response.status_code == 200
    assert response.get_json()["name"] == "Ada L."
    assert response.get_json()["email"] == "ada@example.com"


def test_patch_onto_taken_email_is_409(client):
    _create(client)
    other = _create(client, email="bob@example.com", name="Bob").get_json()["id"]
    response = client.patch(f"/api/v1/users/{other}", json={"email": "ada@example.com"})
    assert response.status_code == 409


def test_delete_then_404(client):
    user_id = _create(client).get_json()["id"]
    assert client.delete(f"/api/v1/users/{user_id}").status_code == 204
    assert client.get(f"/api/v1/users/{user_id}").status_code == 404
    assert client.patch(f"/api/v1/users/{user_id}", json={"name": "x"}).status_code == 404


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "Ada"}, "email"),
        ({"email": "not-an-email", "name": "Ada"}, "email"),
        ({"email": "a@b.c", "name": ""}, "name"),
        ({"email": "a@b.c", "name": 42}, "name"),
        ({"email": "a@b.c", "name": "x" * 101}, "name"),
        ({"email": "a@b.c", "name": "A", "admin": True}, "admin"),
        ({"email": "a\x00@b.c", "name": "A"}, "email"),
    ],
)
def test_bad_fields_are_422_naming_the_field(client, payload, field):
    response = client.post("/api/v1/users", json=payload)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field


def test_huge_id_is_404_not_500(client):
    assert client.get(f"/api/v1/users/{10**30}").status_code == 404
    assert client.get("/api/v1/templates/99999999999").status_code == 404
