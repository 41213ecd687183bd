"""Every failure answers with the JSON envelope and the right status."""

import pytest


def _error(response, status):
    assert response.status_code == status
    assert response.content_type == "application/json"
    error = response.get_json()["error"]
    assert set(error) >= {"code", "message"}
    return error


def test_unknown_path_is_json_404(client):
    assert _error(client.get("/no/such/path"), 404)["code"] == "not_found"


def test_wrong_method_is_json_405_with_allow(client):
    response = client.delete("/api/v1/templates")
    assert _error(response, 405)["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_non_json_body_is_415(client):
    response = client.post(
        "/api/v1/templates", data="name=x", content_type="application/x-www-form-urlencoded"
    )
    assert _error(response, 415)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("data", ["{", "{'a': 1}", "\x00", ""])
def test_invalid_json_is_400(client, data):
    response = client.post("/api/v1/templates", data=data, content_type="application/json")
    assert _error(response, 400)["code"] == "bad_request"


@pytest.mark.parametrize("data", ["[]", "1", '"x"', "null"])
def test_json_that_is_not_an_object_is_rejected(client, data):
    response = client.post("/api/v1/templates", data=data, content_type="application/json")
    assert response.status_code in (400, 422)
    assert "error" in response.get_json()


def test_body_over_max_content_length_is_413(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    response = client.post("/api/v1/templates", json={"name": "n", "body": "x" * 2000})
    assert _error(response, 413)["code"] == "payload_too_large"


def test_unexpected_exception_is_json_500_without_traceback(app, client):
    app.config["PROPAGATE_EXCEPTIONS"] = False

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    response = client.get("/boom")
    error = _error(response, 500)
    assert error["code"] == "internal_error"
    assert "secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_errors_carry_request_id_and_process_time(client):
    response = client.get("/nope", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.headers["X-Process-Time"].endswith("ms")


@pytest.mark.parametrize("incoming", ["bad id with spaces", "x" * 129, "<script>"])
def test_insane_request_id_is_replaced(client, incoming):
    response = client.get("/health/live", headers={"X-Request-ID": incoming})
    assert response.headers["X-Request-ID"] != incoming
    assert len(response.headers["X-Request-ID"]) == 32


def test_absurdly_nested_json_is_400(client):
    data = "[" * 100_000 + "]" * 100_000
    response = client.post("/api/v1/templates", data=data, content_type="application/json")
    assert _error(response, 400)["code"] == "bad_request"


def test_unpaired_surrogate_is_422(client):
    data = '{"name": "\\ud800", "body": "x"}'
    response = client.post("/api/v1/templates", data=data, content_type="application/json")
    assert _error(response, 422)["field"] == "name"


def test_non_finite_render_variable_is_422(client):
    template = client.post("/api/v1/templates", json={"name": "n", "body": "{{x}}"}).get_json()
    data = '{"variables": {"x": 1e999}}'
    response = client.post(
        f"/api/v1/templates/{template['id']}/render", data=data, content_type="application/json"
    )
    assert _error(response, 422)["field"] == "variables.x"
