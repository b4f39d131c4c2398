"""Webhook signatures in the Standard Webhooks scheme, so receivers verify with an off-the-shelf library.

Each delivery carries ``webhook-id`` (the event's id: the same on every retry, to dedupe on),
``webhook-timestamp`` (unix seconds) and ``webhook-signature: v1,<base64 of HMAC-SHA256 of
"<id>.<timestamp>.<body>">``. The secret (``FRAMEQUEUE_WEBHOOK_SECRET``) is either in the
scheme's own form, ``whsec_<base64 of the key>``, which receivers' libraries take as it is
(``standardwebhooks.Webhook("whsec_...")``), or any other string, whose UTF-8 bytes are then the
key: give a receiver's library those bytes (``Webhook(secret.encode())``) or
``whsec_`` + their base64 (``standard_secret``).

Hand-written rather than taken from the ``standardwebhooks`` package: signing is one HMAC, and
that package is the receivers' side (the tests verify with it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

#: The prefix of a secret in the Standard Webhooks form.
SECRET_PREFIX = "whsec_"


def signing_key(secret: str) -> bytes:
    """The HMAC key a secret stands for. Raises ValueError for an empty or malformed one."""
    if not secret:
        raise ValueError("webhooks need a signing secret (FRAMEQUEUE_WEBHOOK_SECRET)")
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("FRAMEQUEUE_WEBHOOK_SECRET: what follows whsec_ is not base64") from None
    if not key:
        raise ValueError("FRAMEQUEUE_WEBHOOK_SECRET: whsec_ names no key")
    return key


def standard_secret(secret: str) -> str:
    """``secret`` in the ``whsec_`` form, for a receiver's library."""
    return SECRET_PREFIX + base64.b64encode(signing_key(secret)).decode()


def sign(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value."""
    digest = hmac.new(key, f"{message_id}.{timestamp_s}.".encode() + body, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"


def signed_headers(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The headers that sign one delivery."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": sign(key, message_id, timestamp_s, body),
    }
