"""One request to a provider: send it, turn its status into an error, read what came back.

Every client goes through :class:`Exchange`, so an HTTP status means the same thing for
every provider: 429 is :class:`RateLimited`, 401/402/403 :class:`KeyRejected`, 5xx and
lost connections :class:`ProviderUnavailable`, timeouts :class:`ProviderTimeout`, other
4xx :class:`RequestRejected`, anything unreadable :class:`BadResponse`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import io
import re
from typing import Any

import PIL.Image
import requests

from pipelines.remote.errors import (
    BadResponse,
    KeyRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RequestRejected,
)
from pipelines.remote.keys import key_fingerprint

#: Longest provider text carried into an error message, in characters.
MAX_REASON_CHARS = 200
#: Statuses that mean the key itself cannot be used (402: the account behind it cannot pay).
KEY_STATUSES = frozenset({401, 402, 403})
#: Error codes with which a 429 means "quota spent" (a dead key), not "slow down".
QUOTA_SPENT_CODES = frozenset({"insufficient_quota"})


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP-date), else None."""
    if not value or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def scrub(text: str, key: str) -> str:
    """Return ``text`` with the key, masked copies of it (``sk-***1234``) and its tail removed."""
    text = text.replace(key, "[key]") if key else text
    tail = key[-6:] if len(key) >= 12 else None
    words = ["[key]" if "***" in word or (tail and tail in word) else word for word in text.split(" ")]
    return " ".join(words)


class Exchange:
    """The requests of one provider call, all made with one key.

    Parameters:
        session: The HTTP session (connection pool) to send with.
        provider: The client's name, for error messages and the key provider.
        key: The API key; sent only in the ``Authorization`` header, shown only as a fingerprint.
        timeout_s: Limit on connecting and on each wait for response bytes, in seconds.
        auth_scheme: The word before the key in the ``Authorization`` header.
    """

    def __init__(
        self, session: requests.Session, provider: str, key: str, timeout_s: float, auth_scheme: str = "Bearer"
    ) -> None:
        self.session = session
        self.provider = provider
        self._key = key
        self.fingerprint = key_fingerprint(key)
        self.timeout_s = timeout_s
        self._auth_scheme = auth_scheme

    def __repr__(self) -> str:
        return f"Exchange(provider={self.provider!r}, key={self.fingerprint})"

    def context(self) -> dict[str, str | None]:
        """The keyword arguments that tie an error to this provider and key (by fingerprint)."""
        return {"provider": self.provider, "key_fingerprint": self.fingerprint}

    def send(
        self,
        method: str,
        url: str,
        *,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        authorized: bool = True,
    ) -> requests.Response:
        """Send one request and return its 2xx response; every failure becomes a provider error.

        ``authorized=False`` sends no key: for output files hosted elsewhere (a CDN must never
        see the key), whose 4xx then mean a bad response rather than a bad key.
        """
        all_headers = dict(headers or {})
        if authorized:
            all_headers["Authorization"] = f"{self._auth_scheme} {self._key}"
        try:
            response = self.session.request(method, url, json=json, headers=all_headers, timeout=self.timeout_s)
        except requests.ConnectTimeout:
            raise ProviderUnavailable(None, **self.context()) from None
        except requests.Timeout:
            raise ProviderTimeout(f"no response within {self.timeout_s} s", **self.context()) from None
        except requests.RequestException as error:
            # The cause keeps the message (host, path, OS error) but not the request and its headers.
            raise ProviderUnavailable(None, **self.context()) from ConnectionError(scrub(str(error), self._key))
        self.check_status(response, key_errors=authorized)
        return response

    def check_status(self, response: requests.Response, *, key_errors: bool = True) -> None:
        """Raise the error a non-2xx ``response`` means; return for a 2xx."""
        status = response.status_code
        if 200 <= status < 300:
            return
        code, reason = self._reason(response)
        if status >= 500:
            raise ProviderUnavailable(status, **self.context())
        if not key_errors:
            raise BadResponse(f"HTTP {status} fetching an output: {reason}", **self.context())
        if status == 429 and code in QUOTA_SPENT_CODES:
            raise KeyRejected(status, code, **self.context())
        if status == 429:
            raise RateLimited(parse_retry_after(response.headers.get("Retry-After")), **self.context())
        if status in KEY_STATUSES:
            raise KeyRejected(status, code or reason, **self.context())
        if status == 408:
            raise ProviderTimeout("HTTP 408 from the provider", **self.context())
        if 400 <= status < 500:
            raise RequestRejected(status, reason, **self.context())
        raise BadResponse(f"unexpected HTTP {status}", **self.context())

    def clean(self, text: str) -> str:
        """Return provider text fit for an error message: one line, key scrubbed, bounded."""
        return scrub(" ".join(text.split()), self._key)[:MAX_REASON_CHARS]

    def read_json(self, response: requests.Response) -> dict[str, Any]:
        """Return the JSON object in ``response``'s body; raise :class:`BadResponse` otherwise."""
        try:
            payload = response.json()
        except ValueError:
            raise BadResponse("response body is not JSON", **self.context()) from None
        if not isinstance(payload, dict):
            raise BadResponse("response body is not a JSON object", **self.context())
        return payload

    def field(self, payload: Any, *path: str | int) -> Any:
        """Return ``payload[path[0]][path[1]]...``; raise :class:`BadResponse` naming what is missing."""
        value = payload
        for step in path:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                where = "".join(f"[{step!r}]" for step in path)
                raise BadResponse(f"response has no {where}", **self.context()) from None
        return value

    def decode_image(self, data: bytes) -> PIL.Image.Image:
        """Decode PNG/JPEG/WebP bytes into an RGB image; raise :class:`BadResponse` if they are not one."""
        try:
            image = PIL.Image.open(io.BytesIO(data))
            image.load()
        except (PIL.UnidentifiedImageError, OSError, ValueError):
            raise BadResponse("output is not a readable image", **self.context()) from None
        return image.convert("RGB")

    def decode_base64_image(self, text: str) -> PIL.Image.Image:
        """Decode a base64 image (``b64_json`` fields, ``data:`` URIs without their header)."""
        try:
            return self.decode_image(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise BadResponse("output is not valid base64", **self.context()) from None

    def fetch_image(self, url: str) -> PIL.Image.Image:
        """Load an output image from a ``data:`` URI or an HTTP(S) URL, sending no key."""
        if url.startswith("data:"):
            return self.decode_base64_image(url.partition(",")[2])
        if not re.match(r"https?://", url):
            raise BadResponse("output is neither a data: URI nor an HTTP(S) URL", **self.context())
        return self.decode_image(self.send("GET", url, authorized=False).content)

    def _reason(self, response: requests.Response) -> tuple[str, str]:
        """Return (machine code, human reason) from an error body, scrubbed of the key and bounded."""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        code, message = "", response.text
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, dict):
                code = str(error.get("code") or error.get("type") or "")
                message = str(error.get("message") or code)
            else:
                code = str(payload.get("title") or payload.get("code") or "")
                message = str(payload.get("detail") or error or payload.get("message") or code)
        return self.clean(code), self.clean(message) or f"HTTP {response.status_code}"
