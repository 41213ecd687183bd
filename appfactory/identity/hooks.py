"""The request hooks of identity: who presents which key, before the rate limiter counts it, and
whether it stands, after the limiter's round trip and before any cached answer is served."""

from __future__ import annotations

from flask import Flask, current_app, request

from appfactory.identity import tokens
from appfactory.identity.context import REFUSED, current_credentials, set_credentials
from appfactory.identity.verifier import KeyVerifier
from appfactory.ratelimit.limiter import count_failed_authentication, failures_left
from appfactory.web.errors import ApiError

# Query parameters that would carry a key: refused, so a key never lands in a URL, a log or a cache.
_KEY_PARAMETERS = frozenset({"api_key", "apikey", "key", "access_token", "token", "authorization"})
API_PREFIX = ("/api/", "/v1/")  # the native API and the OpenAI-compatible face
UNAUTHORIZED = "A valid API key is required: send it as 'Authorization: Bearer <key>'."
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="aigen"'}


def unauthorized() -> ApiError:
    """The one 401: missing, malformed, unknown, expired and revoked keys all look the same."""
    return ApiError(401, UNAUTHORIZED, headers=_CHALLENGE)


def identify() -> None:
    """Before-request, before the limiter: read the presented key (remembered, or from the database).

    Only the API takes keys: probes, metrics and the docs answer whatever Authorization they carry."""
    req = request._get_current_object()
    if not req.path.startswith(API_PREFIX):
        return
    if _may_carry_a_key(req.query_string) and _key_in_query(req.args):
        raise ApiError(400, "API keys are accepted only in the Authorization header, never in the URL.")
    header = req.environ.get("HTTP_AUTHORIZATION")
    if header is None:
        return
    set_credentials(current_app.extensions["identity"].present(header))


def confirm() -> None:
    """Before-request, after the limiter: a revoked key is refused here, before any cached answer."""
    credentials = current_credentials()
    if credentials is None:
        if _needs_key():
            raise unauthorized()
        return
    current_app.extensions["identity"].confirm(credentials)
    if credentials.state == REFUSED:
        retry_in = count_failed_authentication()
        if retry_in is not None:
            raise ApiError(
                429,
                f"Too many failed authentications from this address; retry in {retry_in} s.",
                "rate_limited",
                retry_after=retry_in,
            )
        raise unauthorized()


def _needs_key() -> bool:
    req = request._get_current_object()
    if req.method == "OPTIONS":  # a browser's CORS preflight never carries credentials
        return False
    return current_app.extensions["identity_required"].get(req.endpoint, False)


def note_required_keys(app: Flask) -> None:
    """Endpoint -> whether it needs a key, from the views' `requires_key` marks and the config,
    worked out once: the factory calls this after registering the blueprints."""
    needed = {}
    for endpoint, view in app.view_functions.items():
        mark = getattr(view, "requires_key", False)
        if isinstance(mark, str):  # the name of a flag that lets anonymous callers in
            mark = not app.config[mark]
        needed[endpoint] = bool(mark)
    app.extensions["identity_required"] = needed


def _may_carry_a_key(query_string: bytes) -> bool:
    """A cheap look at the raw query before parsing it (most requests: no)."""
    if not query_string:
        return False
    raw = query_string.lower()
    return b"aig_" in raw or b"key" in raw or b"token" in raw or b"authorization" in raw


def _key_in_query(args) -> bool:
    return any(
        name.lower() in _KEY_PARAMETERS or tokens.looks_like_token(value)
        for name, value in args.items(multi=True)
    )


def init_identity(app: Flask) -> None:
    """The app's verifier; the hooks run around the limiter's (appfactory/pipeline.py)."""
    state = app.extensions["redis"]
    app.extensions["identity"] = KeyVerifier(
        state.client if state is not None else None,
        state.breaker if state is not None else None,
        app.config["CACHE_NAMESPACE"],
        may_look_up=failures_left,  # a guesser past its budget is refused without a database read
    )
