"""Operators' pages (/health, /metrics): answered only to clients in OPS_ALLOW_NETWORKS."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request

from appfactory.contract.schemas import ErrorEnvelope
from appfactory.web.addresses import parse, within
from appfactory.web.errors import ApiError

View = TypeVar("View", bound=Callable[..., Any])

# The refusal as the views document it: `HTTP_403=REFUSED`.
REFUSED = (ErrorEnvelope, "The client's address is outside OPS_ALLOW_NETWORKS.")


def operators_only(view: View) -> View:
    """Refuse `view` (403) to a client outside OPS_ALLOW_NETWORKS, before it does any work: the
    address is the one TRUSTED_PROXIES resolved, so a made-up X-Forwarded-For opens nothing."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not within(parse(request.remote_addr), current_app.config["OPS_ALLOW_NETWORKS"]):
            raise ApiError(403, "This page answers only the operators' networks (OPS_ALLOW_NETWORKS).")
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]
