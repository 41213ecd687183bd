"""/openapi.json: a valid OpenAPI document of exactly the routes the service has, and /docs offline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from openapi_spec_validator import validate

from appfactory import create_app
from tests.conftest import base_overrides
from tests.support.gunicorn import ROOT

_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _document(app) -> dict:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


@pytest.fixture(scope="module")
def service():
    app = create_app(base_overrides(DATABASE_URL="sqlite://", MAX_PROMPT_CHARS=1234, AI_MODELS="m-one,m-two"))
    return app


def test_the_document_is_valid_openapi_3_1(service):
    document = _document(service)
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_the_document_describes_every_route_and_no_other(service):
    served = {
        (_CONVERTER.sub(r"{\1}", rule.rule), method.lower())
        for rule in service.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method) for path, operations in _document(service)["paths"].items() for method in operations
    }
    assert served == documented
    assert ("/api/v1/ai/generate", "get") in served and len(served) >= 20


def test_every_operation_says_its_errors_headers_and_keys(service):
    document = _document(service)
    needs_key = {
        ("/api/v1/templates", "post"),
        ("/api/v1/templates/{template_id}", "put"),
        ("/api/v1/templates/{template_id}", "patch"),
        ("/api/v1/templates/{template_id}", "delete"),
        ("/api/v1/users/{user_id}", "patch"),
        ("/api/v1/users/{user_id}", "delete"),
    }  # and generation, unless anonymous callers are allowed (as here; see the next test)
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer aig_…`",
    }
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status, response in responses.items():
                assert "X-Request-ID" in response["headers"], (path, method, status)
            if not path.startswith(("/api/", "/v1/")):  # the native API and the OpenAI-compatible face
                assert operation["security"] == []
                continue
            expected = [{"bearer": []}] if (path, method) in needs_key else [{"bearer": []}, {}]
            assert operation["security"] == expected, (path, method)
            for status in ("401", "422", "429", "503"):
                error = responses[status]["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/ErrorEnvelope"}, (path, method, status)
            assert "Retry-After" in responses["429"]["headers"]
            assert "WWW-Authenticate" in responses["401"]["headers"]
            assert "X-RateLimit-Remaining" in responses["422"]["headers"]
    assert "Location" in document["paths"]["/api/v1/templates"]["post"]["responses"]["201"]["headers"]


def test_the_document_follows_the_configuration(service):
    schemas = _document(service)["components"]["schemas"]
    for name in ("GenerateQuery", "GenerateBody"):
        prompt = schemas[name]["properties"]["prompt"]
        assert prompt["maxLength"] == 1234
        model = schemas[name]["properties"]["model"]["anyOf"][0]
        assert model["enum"] == ["m-one", "m-two"]
    anonymous = create_app(base_overrides(DATABASE_URL="sqlite://", AI_ALLOW_ANONYMOUS=False))
    generate = _document(anonymous)["paths"]["/api/v1/ai/generate"]["get"]
    assert generate["security"] == [{"bearer": []}]


def test_the_docs_page_and_its_assets_are_served_from_the_package(service):
    client = service.test_client()
    assert client.get("/docs").status_code == 308
    assert client.get("/docs").headers["Location"] == "/docs/"
    page = client.get("/docs/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/docs/swagger-ui-bundle.js" in assets
    assert all(asset.startswith("/docs/") for asset in assets), assets  # nothing from the internet
    for asset in assets:
        with client.get(asset) as response:  # a file response: closed when read
            assert response.status_code == 200, asset
    assert "X-RateLimit-Limit" not in page.headers  # reading the docs spends no API budget
    missing = client.get("/docs/no-such-file.js")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"


def test_probes_and_docs_ignore_a_key_only_the_api_reads(service):
    client = service.test_client()
    bad = {"Authorization": "Bearer aig_1_not-a-real-secret"}
    for path in ("/health/live", "/metrics", "/openapi.json", "/docs/"):
        assert client.get(path, headers=bad).status_code == 200, path
    assert client.get("/api/v1/templates", headers=bad).status_code == 401


_PRINT_DOCUMENT = """
import json
from appfactory import create_app
app = create_app({"DATABASE_URL": "sqlite://", "LOG_LEVEL": "WARNING"})
print(json.dumps(app.test_client().get("/openapi.json").get_json()))
"""


def _document_under(optimize: int) -> dict:
    env = {**os.environ, "PYTHONOPTIMIZE": str(optimize), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", _PRINT_DOCUMENT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_document_is_the_same_when_the_workers_drop_docstrings():
    """The image runs -OO (no docstrings in memory): summaries and schema descriptions read from source."""
    plain, optimized = _document_under(0), _document_under(2)
    assert plain["components"]["schemas"]["GenerateBody"]["description"].startswith("`POST /generate`")
    assert plain["paths"]["/health/live"]["get"]["summary"].startswith("The process answers")
    assert optimized == plain
