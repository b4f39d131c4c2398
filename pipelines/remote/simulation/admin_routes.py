"""The simulator's control endpoints under ``/_sim/``: no key needed, loopback clients only.

========================================  ==============================================
``GET  /_sim/stats``                      per key fingerprint: counts and accepted times
``POST /_sim/keys/{key}/revoke``          revoke a key, named by itself or its fingerprint
``POST /_sim/keys/{key}/restore``         undo a revocation
``POST /_sim/latency``                    ``{"latency_ms": 250}``
``POST /_sim/faults``                     ``{"count": 3, "status": 503}``: a burst of 5xx
``POST /_sim/reset-quotas``               empty every key's 60 s window
``POST /_sim/reset-stats``                forget counts and timestamps
``POST /_sim/pending-polls``              ``{"polls": 2}``: predictions need 2 polls to finish
``POST /_sim/fail-predictions``           ``{"count": 1}``: the next prediction ends ``failed``
``POST /_sim/refused-words``              ``{"words": ["castle"]}``: prompts holding one get 400
========================================  ==============================================
"""

from __future__ import annotations

from typing import Any

from pipelines.remote.simulation.protocol import Route, SimError, SimRequest, SimResponse, json_response, route
from pipelines.remote.simulation.state import SimState


def _count(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SimError(400, f"{name} must be a non-negative integer")
    return value


def stats(state: SimState, request: SimRequest) -> SimResponse:
    return json_response(
        200,
        {
            "keys": state.ledger.stats(),
            "latency_ms": state.latency_ms,
            "pending_polls": state.pending_polls,
        },
    )


def revoke(state: SimState, request: SimRequest) -> SimResponse:
    return _set_revoked(state, request.params["key"], revoked=True)


def restore(state: SimState, request: SimRequest) -> SimResponse:
    return _set_revoked(state, request.params["key"], revoked=False)


def _set_revoked(state: SimState, key: str, *, revoked: bool) -> SimResponse:
    if not state.ledger.set_revoked(key, revoked):
        raise SimError(404, "no such key or fingerprint")
    return json_response(200, {"revoked": revoked})


def set_latency(state: SimState, request: SimRequest) -> SimResponse:
    state.latency_ms = _count(request.body, "latency_ms")
    return json_response(200, {"latency_ms": state.latency_ms})


def start_faults(state: SimState, request: SimRequest) -> SimResponse:
    status = request.body.get("status", 503)
    if not isinstance(status, int) or not 500 <= status < 600:
        raise SimError(400, "status must be a 5xx code")
    count = _count(request.body, "count")
    state.ledger.start_fault_burst(count, status)
    return json_response(200, {"count": count, "status": status})


def reset_quotas(state: SimState, request: SimRequest) -> SimResponse:
    state.ledger.reset_quotas()
    return json_response(200, {"reset": "quotas"})


def reset_stats(state: SimState, request: SimRequest) -> SimResponse:
    state.ledger.reset_stats()
    return json_response(200, {"reset": "stats"})


def set_pending_polls(state: SimState, request: SimRequest) -> SimResponse:
    state.pending_polls = _count(request.body, "polls")
    return json_response(200, {"pending_polls": state.pending_polls})


def fail_predictions(state: SimState, request: SimRequest) -> SimResponse:
    count = _count(request.body, "count")
    state.fail_next_predictions(count)
    return json_response(200, {"count": count})


def set_refused_words(state: SimState, request: SimRequest) -> SimResponse:
    words = request.body.get("words")
    if not isinstance(words, list) or not all(isinstance(word, str) and word.strip() for word in words):
        raise SimError(400, "words must be a list of non-empty strings")
    state.refused_words = frozenset(word.strip().lower() for word in words)
    return json_response(200, {"words": sorted(state.refused_words)})


#: The control endpoints.
ADMIN_ROUTES: tuple[Route, ...] = (
    route("GET", "/_sim/stats", stats),
    route("POST", "/_sim/keys/{key}/revoke", revoke),
    route("POST", "/_sim/keys/{key}/restore", restore),
    route("POST", "/_sim/latency", set_latency),
    route("POST", "/_sim/faults", start_faults),
    route("POST", "/_sim/reset-quotas", reset_quotas),
    route("POST", "/_sim/reset-stats", reset_stats),
    route("POST", "/_sim/pending-polls", set_pending_polls),
    route("POST", "/_sim/fail-predictions", fail_predictions),
    route("POST", "/_sim/refused-words", set_refused_words),
)
