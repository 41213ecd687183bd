"""API key tokens: `aig_<key id>_<secret>`, the secret 32 random bytes, only its SHA-256 stored.

The id in the token finds the key's row; the secret is compared as a hash in constant time. A key's
secret is high-entropy, so a fast hash is enough (no password stretching: nothing to guess).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import NamedTuple

SCHEME = "aig"
SECRET_BYTES = 32
# What a client may send: the scheme, a decimal id, and a URL-safe base64 secret.
_TOKEN = re.compile(rf"{SCHEME}_([1-9][0-9]{{0,9}})_([A-Za-z0-9_-]{{20,100}})")
PREFIX_SECRET_CHARS = 4  # how much of the secret a key's visible prefix shows


class Presented(NamedTuple):
    """A token as a client sent it: the key id it claims and the hash of its secret."""

    key_id: int
    secret_hash: str


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def token(key_id: int, secret: str) -> str:
    """The full key a client sends, shown once."""
    return f"{SCHEME}_{key_id}_{secret}"


def hint(secret: str) -> str:
    """The part of a secret that is stored in the clear, to tell keys apart."""
    return secret[:PREFIX_SECRET_CHARS]


def prefix(key_id: int, hint: str) -> str:
    """What names a key without revealing it: `aig_12_AbCd…`."""
    return f"{SCHEME}_{key_id}_{hint}…"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(raw: str) -> Presented | None:
    """The key id and secret hash of a well-formed token, else None."""
    match = _TOKEN.fullmatch(raw)
    if match is None:
        return None
    return Presented(int(match[1]), hash_secret(match[2]))


def looks_like_token(value: str) -> bool:
    """Whether a value (a query parameter) carries a key."""
    return _TOKEN.search(value) is not None


def same_hash(stored: str, presented: str) -> bool:
    """Constant-time comparison, so the time taken says nothing of how much matched."""
    return hmac.compare_digest(stored.encode(), presented.encode())
