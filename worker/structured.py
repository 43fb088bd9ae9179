"""Structured answers: check an answer against the profile's JSON schema and split its
top-level fields into `answer.<field>` cells."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator


@lru_cache(maxsize=16)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json))


def split_answer(answer: str, schema: dict[str, Any]) -> tuple[dict[str, str], str]:
    """(cells by column name, error). An answer that does not match is an error, never blank."""
    try:
        value = json.loads(answer)
    except ValueError as exc:
        return {}, f"answer is not JSON ({exc.msg} at char {exc.pos}); expected the schema's object"
    validator = _validator(json.dumps(schema, sort_keys=True))
    problems = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if problems:
        first = problems[0]
        where = "/".join(str(p) for p in first.absolute_path) or "the answer"
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return {}, f"answer does not match the schema at {where}: {first.message}{more}"
    return {f"answer.{k}": _cell(v) for k, v in value.items()}, ""


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
