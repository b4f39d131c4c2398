"""The simulated provider APIs: OpenAI-style images and chat, Replicate-style predictions.

Shapes follow the public documentation closely enough for framequeue's clients (and most
others) to work unchanged: ``data[0].b64_json`` / ``data[0].url``; ``choices[0].message``;
prediction objects with ``id``, ``status``, ``output``, ``error`` and ``urls``. A Replicate
input with ``max_tokens`` or ``max_new_tokens`` is treated as a language model, any other as
an image model.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

from pipelines.remote.simulation.protocol import Route, SimError, SimRequest, SimResponse, json_response, route
from pipelines.remote.simulation.render import render_png, render_text
from pipelines.remote.simulation.state import SimState

#: Largest image side the simulator renders, in pixels.
MAX_SIDE_PX = 2048
#: Side of an image when the request names none (Replicate models have defaults too).
DEFAULT_SIDE_PX = 512


def _int(body: dict[str, Any], name: str, default: int, low: int, high: int, status: int = 400) -> int:
    """Return ``body[name]`` (or ``default``) checked to be an integer in [low, high]."""
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SimError(status, f"{name} must be an integer in [{low}, {high}]")
    return value


def _text(body: dict[str, Any], name: str, status: int = 400) -> str:
    """Return ``body[name]`` checked to be a non-empty string."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SimError(status, f"{name} is required and must be a non-empty string")
    return value


def _allowed(state: SimState, prompt: str, status: int = 400) -> str:
    """Return ``prompt`` unless the content policy refuses it, as OpenAI's does with a 400."""
    if state.refuses(prompt):
        raise SimError(status, "the prompt was refused by the content policy", "content_policy_violation")
    return prompt


def openai_images(state: SimState, request: SimRequest) -> SimResponse:
    body = request.body
    _text(body, "model")
    prompt = _allowed(state, _text(body, "prompt"))
    match = re.fullmatch(r"(\d+)x(\d+)", str(body.get("size", "1024x1024")))
    if not match or not all(1 <= int(side) <= MAX_SIDE_PX for side in match.groups()):
        raise SimError(400, f"size must be WxH with sides in [1, {MAX_SIDE_PX}]")
    width, height = int(match[1]), int(match[2])
    count = _int(body, "n", 1, 1, 4)
    seed = _int(body, "seed", 0, 0, 2**63 - 1)
    as_base64 = body.get("response_format", "url") == "b64_json"
    data = []
    for index in range(count):
        png = render_png(prompt, seed + index, width, height)
        if as_base64:
            data.append({"b64_json": base64.b64encode(png).decode("ascii")})
        else:
            data.append({"url": f"{request.base_url}/_files/{state.store_file(png)}"})
    return json_response(200, {"created": int(time.time()), "data": data})


def openai_chat(state: SimState, request: SimRequest) -> SimResponse:
    body = request.body
    model = _text(body, "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise SimError(400, "messages must be a list of objects")
    user = [str(m.get("content", "")) for m in messages if m.get("role") == "user"]
    if not user:
        raise SimError(400, "messages need a user message")
    max_tokens = _int(body, "max_tokens", body.get("max_completion_tokens") or 16, 1, 4096)
    content = render_text(_allowed(state, user[-1]), _int(body, "seed", 0, 0, 2**63 - 1), max_tokens)
    return json_response(
        200,
        {
            "id": f"chatcmpl-sim-{int(time.time() * 1000)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": len(user[-1].split()), "completion_tokens": len(content.split())},
        },
    )


def _prediction_output(state: SimState, request: SimRequest, inputs: dict[str, Any]) -> Any:
    """Compute what the model would output: text chunks for language models, image URLs otherwise."""
    prompt = _allowed(state, _text(inputs, "prompt", 422), 422)
    seed = _int(inputs, "seed", 0, 0, 2**63 - 1, 422)
    if "max_tokens" in inputs or "max_new_tokens" in inputs:
        limit = inputs.get("max_tokens") or inputs.get("max_new_tokens")
        text = render_text(prompt, seed, limit if isinstance(limit, int) else 128)
        return [word + " " for word in text.split(" ")[:-1]] + text.split(" ")[-1:]
    width = _int(inputs, "width", DEFAULT_SIDE_PX, 1, MAX_SIDE_PX, 422)
    height = _int(inputs, "height", DEFAULT_SIDE_PX, 1, MAX_SIDE_PX, 422)
    count = _int(inputs, "num_outputs", 1, 1, 4, 422)
    files = [state.store_file(render_png(prompt, seed + i, width, height)) for i in range(count)]
    return [f"{request.base_url}/_files/{name}" for name in files]


def replicate_create(state: SimState, request: SimRequest) -> SimResponse:
    inputs = request.body.get("input")
    if not isinstance(inputs, dict):
        raise SimError(422, "input is required and must be an object", "Unprocessable Entity")
    version = request.body.get("version")
    if "owner" in request.params:
        model = f"{request.params['owner']}/{request.params['name']}"
    elif isinstance(version, str) and version:
        model = version.split(":")[0] if "/" in version else "unknown/unknown"
    else:
        raise SimError(422, "version is required", "Unprocessable Entity")
    output = _prediction_output(state, request, inputs)
    return json_response(201, state.create_prediction(request.base_url, model, version, inputs, output))


def replicate_get(state: SimState, request: SimRequest) -> SimResponse:
    prediction = state.poll_prediction(request.params["id"])
    if prediction is None:
        raise SimError(404, "prediction not found", "Not found")
    return json_response(200, prediction)


def replicate_cancel(state: SimState, request: SimRequest) -> SimResponse:
    prediction = state.cancel_prediction(request.params["id"])
    if prediction is None:
        raise SimError(404, "prediction not found", "Not found")
    return json_response(200, prediction)


def output_file(state: SimState, request: SimRequest) -> SimResponse:
    data = state.file(request.params["name"])
    if data is None:
        raise SimError(404, "no such file", "Not found")
    return SimResponse(200, data, content_type="image/png")


#: The provider endpoints, in matching order.
PROVIDER_ROUTES: tuple[Route, ...] = (
    route("POST", "/v1/images/generations", openai_images, style="openai", auth=True, counted=True),
    route("POST", "/v1/chat/completions", openai_chat, style="openai", auth=True, counted=True),
    route(
        "POST", "/v1/models/{owner}/{name}/predictions", replicate_create, style="replicate", auth=True, counted=True
    ),
    route("POST", "/v1/predictions", replicate_create, style="replicate", auth=True, counted=True),
    route("GET", "/v1/predictions/{id}", replicate_get, style="replicate", auth=True),
    route("POST", "/v1/predictions/{id}/cancel", replicate_cancel, style="replicate", auth=True),
    route("GET", "/_files/{name}", output_file),
)
