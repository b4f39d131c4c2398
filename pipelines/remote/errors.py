"""Errors raised by the remote provider clients.

Every one derives from :class:`ProviderError` (itself a :class:`pipelines.PipelineError`),
and each subclass says what a caller should do next: wait (:class:`RateLimited`), stop
using a key (:class:`KeyRejected`), retry later (:class:`ProviderUnavailable`,
:class:`ProviderTimeout`) or give up on this request (:class:`RequestRejected`,
:class:`GenerationFailed`, :class:`BadResponse`).

No error ever holds an API key: messages and attributes name a key by its fingerprint
(:func:`pipelines.remote.keys.key_fingerprint`) and nothing else.
"""

from __future__ import annotations

from typing import Any

from pipelines.errors import PipelineError


def _rebuild(cls: type[ProviderError], args: tuple[Any, ...], state: dict[str, Any]) -> ProviderError:
    """Recreate an error from its message and attributes (the subclasses' signatures differ)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ProviderError(PipelineError):
    """Base class for every error raised by a remote provider client.

    Parameters:
        message: What went wrong; must not contain a key (the clients scrub provider text).
        provider: The client's name (``"openai"``, ``"replicate"``...), when known.
        key_fingerprint: The fingerprint of the key the request used, when there was one.
    """

    def __init__(self, message: str, *, provider: str | None = None, key_fingerprint: str | None = None) -> None:
        where = ", ".join(part for part in (provider, f"key {key_fingerprint}" if key_fingerprint else None) if part)
        super().__init__(f"{message} ({where})" if where else message)
        self.provider = provider
        self.key_fingerprint = key_fingerprint

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickling calls cls(*args) by default, which the subclasses' signatures do not fit.
        return _rebuild, (type(self), self.args, dict(self.__dict__))


class RateLimited(ProviderError):
    """HTTP 429: the key is over its quota for now; another key, or this one later, may work.

    Attributes:
        retry_after_s: Seconds until the provider expects to accept the key again (from the
            ``Retry-After`` header), or ``None`` when it did not say.
    """

    def __init__(self, retry_after_s: float | None, **context: str | None) -> None:
        after = f"retry after {retry_after_s:.1f} s" if retry_after_s is not None else "no Retry-After given"
        super().__init__(f"rate limited, {after}", **context)
        self.retry_after_s = retry_after_s


class KeyRejected(ProviderError):
    """HTTP 401/402/403 (or a 429 saying the quota is spent): the key is invalid or revoked.

    Attributes:
        status: The HTTP status.
        reason: The provider's short reason (its error code where it gives one), key scrubbed.
    """

    def __init__(self, status: int, reason: str, **context: str | None) -> None:
        super().__init__(f"key rejected with HTTP {status}: {reason}", **context)
        self.status = status
        self.reason = reason


class ProviderUnavailable(ProviderError):
    """HTTP 5xx or no connection: the provider failed, not the request; retry later.

    Attributes:
        status: The HTTP status, or ``None`` when no response came (connection refused, reset).
    """

    def __init__(self, status: int | None, **context: str | None) -> None:
        what = f"HTTP {status}" if status is not None else "no connection"
        super().__init__(f"provider unavailable: {what}", **context)
        self.status = status


class ProviderTimeout(ProviderError):
    """The provider did not answer, or a prediction did not finish, within the time allowed."""


class RequestRejected(ProviderError):
    """Another HTTP 4xx (400, 404, 422...): the request itself is wrong; retrying will not help.

    Attributes:
        status: The HTTP status.
        reason: The provider's message, key scrubbed and bounded in length.
    """

    def __init__(self, status: int, reason: str, **context: str | None) -> None:
        super().__init__(f"request rejected with HTTP {status}: {reason}", **context)
        self.status = status
        self.reason = reason


class GenerationFailed(ProviderError):
    """The provider accepted the request but the model run ended failed, canceled or aborted.

    Attributes:
        status: The run's final status as the provider names it.
        reason: The provider's error text, key scrubbed and bounded in length.
    """

    def __init__(self, status: str, reason: str, **context: str | None) -> None:
        super().__init__(f"generation {status}: {reason}", **context)
        self.status = status
        self.reason = reason


class BadResponse(ProviderError):
    """A response framequeue cannot use: not JSON, missing fields, an undecodable image."""
