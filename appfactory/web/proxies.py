"""Who the client is behind proxies: TRUSTED_PROXIES as a hop count or as the proxies' networks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

from appfactory.web.addresses import Network, parse, within

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class TrustedProxies:
    """X-Forwarded-For, believed only from a peer in `networks`: the client is its rightmost address
    that is not itself one of those proxies (every hop to its right was appended by a trusted one)."""

    def __init__(self, app: WSGIApplication, networks: Iterable[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded and within(parse(environ.get("REMOTE_ADDR")), self.networks):
            client = self.client(forwarded)
            if client is not None:
                environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)

    def client(self, forwarded: str) -> str | None:
        """The rightmost untrusted hop; the farthest trusted one when all are trusted or the next is
        not an address; None when the nearest is not an address (the peer stays the client)."""
        client = None
        for hop in reversed(forwarded.split(",")):
            address = parse(hop)
            if address is None:
                break
            client = str(address)
            if not within(address, self.networks):
                break
        return client


def trust_proxies(app: WSGIApplication, trusted: int | tuple[Network, ...]) -> WSGIApplication:
    """`app` behind the middleware TRUSTED_PROXIES asks for (none for 0)."""
    if isinstance(trusted, int):
        return ProxyFix(app, x_for=trusted) if trusted else app
    return TrustedProxies(app, trusted)
