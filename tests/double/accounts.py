"""What the double's account allows, with OpenAI's status codes and error bodies: which keys,
which models, how much quota, which parameters a model takes.

- A key containing ``-wrong-`` is refused: 401 ``invalid_api_key``.
- A model named ``no-such-…`` does not exist: 404 ``model_not_found``; ``forbidden-…`` is one
  the key may not use: 403 ``model_not_found`` (OpenAI's words for both).
- A reasoning model (``reasoning-…``, and OpenAI's own: ``gpt-5``, ``gpt-5-mini``, ``o3``, …;
  not ``gpt-5-chat-…``) refuses a ``temperature`` other than 1 (400 ``unsupported_value``, as
  OpenAI words it) and ``top_p`` (400 ``unsupported_parameter``).
- ``max_output_tokens`` below 16 is refused by the Responses API: 400
  ``integer_below_min_value``.
- The ``quota`` option (POST /_double/config) lets that many answering requests through; every
  later one gets 429 ``insufficient_quota`` until the option is raised or set to 0 (no quota).
"""

from __future__ import annotations

import re

from aiohttp import web

from .core import ApiError, Double, json_body

_REASONING = re.compile(r"reasoning-|gpt-5(?!-chat)|o[1-9](?![0-9])")

# The requests that produce an answer, and so use quota and name a model.
ANSWERING = frozenset({"response", "chat", "run_create", "submit_tool_outputs"})
MIN_OUTPUT_TOKENS = 16


def check_key(request: web.Request) -> None:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if "-wrong-" in token:
        masked = f"{token[:3]}*****{token[-4:]}"
        raise ApiError(
            401,
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


async def check(double: Double, kind: str, request: web.Request) -> None:
    """Raise the ApiError OpenAI would send for this request, if any."""
    check_key(request)
    if kind in ANSWERING:
        check_body(double, kind, await json_body(request))


def check_body(double: Double, kind: str, body: dict) -> None:
    """The model, parameter and quota rules for an answering request's body (a batch line's
    too: ``kind`` is "response" or "chat" there)."""
    model = body.get("model")
    if isinstance(model, str):
        _check_model(model, body)
    if kind == "response":
        limit = body.get("max_output_tokens")
        if isinstance(limit, int) and limit < MIN_OUTPUT_TOKENS:
            raise ApiError(
                400,
                "Invalid 'max_output_tokens': integer below minimum value. Expected a value "
                f">= {MIN_OUTPUT_TOKENS}, but got {limit} instead.",
                param="max_output_tokens",
                code="integer_below_min_value",
            )
    quota = double.config.quota
    if quota > 0:
        if double.stats.quota_used >= quota:
            raise ApiError(
                429,
                "You exceeded your current quota, please check your plan and billing details. "
                "For more information on this error, read the docs: "
                "https://platform.openai.com/docs/guides/error-codes/api-errors.",
                type="insufficient_quota",
                code="insufficient_quota",
            )
        double.stats.quota_used += 1


def _check_model(model: str, body: dict) -> None:
    if model.startswith("no-such-"):
        raise ApiError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    if model.startswith("forbidden-"):
        raise ApiError(
            403,
            f"Project does not have access to model `{model}`.",
            code="model_not_found",
        )
    if _REASONING.match(model):
        if body.get("temperature") not in (None, 1, 1.0):
            raise ApiError(
                400,
                f"Unsupported value: 'temperature' does not support {body['temperature']} with "
                "this model. Only the default (1) value is supported.",
                param="temperature",
                code="unsupported_value",
            )
        if body.get("top_p") not in (None, 1, 1.0):
            raise ApiError(
                400,
                "Unsupported parameter: 'top_p' is not supported with this model.",
                param="top_p",
                code="unsupported_parameter",
            )
