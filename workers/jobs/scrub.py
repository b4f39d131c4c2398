"""Secrets taken out of the text a job record keeps about a failure: its reason and its traceback.

A stage that fails may carry an API key or a token in its exception (a provider echoing the
request, a URL with a credential in it). Every text the job-status middleware records is passed
through a ``Scrubber`` first, which knows the values that must never be written: the settings'
``api_token`` and ``webhook_secret`` and every key of every provider in the remote config.
The same scrubber filters the worker's log handlers: dramatiq logs a failed message's traceback.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterable

from queue_config.remote import load_remote_config
from queue_config.settings import Settings

#: What a secret is replaced with.
REDACTED = "[redacted]"
#: Longest traceback kept in a job record: its end, where the failing frame and the error are.
MAX_TRACEBACK_CHARS = 8000
#: The prefix of a webhook secret given as ``whsec_<base64>``: its base64 part is secret on its own too.
_WEBHOOK_SECRET_PREFIX = "whsec_"


class Scrubber:
    """Replaces each known secret in a text with ``[redacted]`` (the longest first, so none is left half)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class ScrubbingFilter(logging.Filter):
    """A log handler's filter that takes secrets out of each record's message and traceback text."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.scrub(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


def scrub_log_handlers(scrub: Scrubber, logger: logging.Logger | None = None) -> None:
    """Put a ``ScrubbingFilter`` on each handler of ``logger`` (the root logger's: where dramatiq's records go)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(found, ScrubbingFilter) for found in handler.filters):
            handler.addFilter(ScrubbingFilter(scrub))


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value a worker with these settings holds: tokens, the webhook secret, the providers' keys.

    A remote config or key file that cannot be read gives no keys: a worker that cannot read them
    cannot send them either.
    """
    found = [settings.api_token, settings.webhook_secret, settings.webhook_secret.removeprefix(_WEBHOOK_SECRET_PREFIX)]
    try:
        config = load_remote_config(settings.remote_config)
        for provider in config.providers.values():
            found.extend(provider.load_keys())
    except (OSError, ValueError):
        pass
    return found


def traceback_text(exception: BaseException, scrub: Scrubber, max_chars: int = MAX_TRACEBACK_CHARS) -> str:
    """The exception's traceback, scrubbed, then cut to its last ``max_chars`` characters."""
    text = scrub("".join(traceback.format_exception(exception)))
    return text if len(text) <= max_chars else "…" + text[-(max_chars - 1):]
