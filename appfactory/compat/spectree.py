"""spectree: a view's request parsed for the schemas it declares, not for those it does not.

SpecTree's Flask plugin copies every request header into a dict and parses the cookies on every
request, before it knows whether the view declares a `headers` or `cookies` schema; none of this
service's views does. `LeanFlaskPlugin` skips those two copies when the view declares neither and
builds the same `Context` from the query and the body (docs/compat.md). It is the SpecTree `backend`
(a documented extension point); what it relies on beyond it: the plugin's `request_validation`
signature, `FORM_MIMETYPE` and `model_adapter.validate_obj`, `Context` and `get_multidict_items`.
"""

from __future__ import annotations

import flask
from spectree.plugins.base import Context
from spectree.plugins.flask_plugin import FlaskPlugin
from spectree.utils import get_multidict_items

from appfactory.compat import private_way

TESTED = "3.0.0"
PRIVATE = private_way("spectree", TESTED)

_NO_BODY = frozenset({"GET", "DELETE"})


class StreamingFlaskPlugin(FlaskPlugin):
    """FlaskPlugin, passing a streamed response on untouched: validating it would read it whole, so
    the client would get nothing until its end (a stream's events are checked by its tests)."""

    def validate_response(self, resp, resp_model, skip_validation, force_resp_serialize):
        if isinstance(resp, flask.Response) and resp.is_streamed:
            return resp, None
        return super().validate_response(resp, resp_model, skip_validation, force_resp_serialize)


class LeanFlaskPlugin(StreamingFlaskPlugin):
    """FlaskPlugin, with headers and cookies read only for a view that declares their schema."""

    def request_validation(self, request, query, json, form, headers, cookies):
        if headers or cookies or form:
            return super().request_validation(request, query, json, form, headers, cookies)
        validate = self.model_adapter.validate_obj
        use_json = json and request.method not in _NO_BODY and request.mimetype not in self.FORM_MIMETYPE
        request.context = Context(
            validate(query, get_multidict_items(request.args, query)) if query else None,
            validate(json, request.get_json(silent=True) or {}) if use_json else None,
            None,
            None,
            None,
        )
        return None


# The backend `appfactory.contract` gives its SpecTree.
PLUGIN = LeanFlaskPlugin if PRIVATE else StreamingFlaskPlugin
