"""An assistant profile: a TOML file that defines the assistant like the Assistants API did
(name, model, instructions, sampling, tools, response format), reusable across jobs.

    name = "Practice problem generator"
    model = "gpt-5-mini"
    instructions = "..."
    temperature = 0.7
    max_output_tokens = 800

    [[tools]]
    function = "worker.builtin_tools:evaluate"   # module:callable, importable by every worker
    description = "Evaluate an arithmetic expression."
    parameters = { type = "object", properties = { expression = { type = "string" } } }

    [response_format]          # structured answers: a JSON schema every answer must match
    name = "practice_problem"
    schema = { type = "object", properties = { ... }, required = [ ... ] }

    [check]                    # solve what was written, again, before accepting it (worker/check)
    question = "{problem}"     # asked in a new conversation: {field} of the answer, {question}
    compare = "answer"         # the field whose numbers the solver's answer must match
    attempts = 3               # answers written at most, the first included
    new = true                 # the problem's equation must not be the request's or repeat one
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import ConfigError

MIN_OUTPUT_TOKENS = 16  # the least the Responses API takes for max_output_tokens

KEYS = {
    "name", "model", "instructions", "temperature", "top_p", "max_output_tokens", "tools",
    "response_format", "check", "grade",
}  # fmt: skip
GRADE_KEYS = {"model", "expected", "field"}  # [grade]: the judge, the key column, the field
CHECK_KEYS = {"question", "compare", "instructions", "attempts", "new"}
# A tool's function: a dotted module path, a colon, an attribute name.
FUNCTION = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
# Where an operator lists the tools a profile uploaded to `askbatch serve` may name.
UI_TOOLS = "ASKBATCH_UI_TOOLS"
# What the check's solver is told when the profile says nothing else (worker/check.py reads
# the final answer from the line this asks for).
CHECK_INSTRUCTIONS = (
    "Solve the problem step by step, checking each calculation. "
    "End with one line: Answer: <the final answer only>."
)


@dataclass(frozen=True)
class Tool:
    """A function tool: the callable a worker runs, and the JSON schema the model sees."""

    name: str
    function: str  # "module:callable"
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})

    def definition(self) -> dict[str, Any]:
        """The function definition the model sees (Responses API shape)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def chat_definition(self) -> dict[str, Any]:
        """The same, nested as Chat Completions and Assistants expect it."""
        return {"type": "function", "function": self.definition()}


@dataclass(frozen=True)
class Profile:
    name: str = ""
    model: str = ""
    instructions: str = ""
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    tools: tuple[Tool, ...] = ()
    # {"name": str, "schema": dict, "strict": bool}, or None for free text.
    response_format: dict[str, Any] | None = None
    # {"question", "compare", "instructions", "attempts", "new"} (worker/check.py), or None.
    check: dict[str, Any] | None = None
    # {"model", "expected", "field"} (jobs/grade.py), or None.
    grade: dict[str, str] | None = None

    @property
    def schema(self) -> dict[str, Any] | None:
        return self.response_format["schema"] if self.response_format else None

    def answer_columns(self) -> list[str]:
        """One output column per top-level field of the answer schema: `answer.<field>`."""
        props = (self.schema or {}).get("properties") or {}
        return [f"answer.{name}" for name in props]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Profile:
        if not data:
            return cls()
        data = dict(data)
        data["tools"] = tuple(Tool(**t) for t in data.get("tools") or ())
        return cls(**data)


def load_profile(path: str | Path, uploaded: bool = False) -> Profile:
    """Read and check a profile file; every problem names the file and the key. An
    `uploaded` profile (from the page) is data: it may not name a file to open."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: assistant profile not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the assistant profile: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if unknown := sorted(set(raw) - KEYS):
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {sorted(KEYS)}")
    where = str(path)
    values: dict[str, Any] = {}
    for key, kind in (("name", str), ("model", str), ("instructions", str)):
        if key in raw:
            values[key] = _typed(raw[key], kind, f"{where}: {key}")
    for key in ("temperature", "top_p"):
        if key in raw:
            values[key] = float(_typed(raw[key], (int, float), f"{where}: {key}"))
    if "max_output_tokens" in raw:
        values["max_output_tokens"] = _typed(
            raw["max_output_tokens"], int, f"{where}: max_output_tokens"
        )
        if values["max_output_tokens"] < MIN_OUTPUT_TOKENS:
            # OpenAI refuses less for every row (400 integer_below_min_value): say so now.
            raise ConfigError(
                f"{where}: max_output_tokens must be at least {MIN_OUTPUT_TOKENS} (the API's "
                f"minimum), not {values['max_output_tokens']}"
            )
    values["tools"] = tuple(
        _tool(t, f"{where}: tools[{i}]") for i, t in enumerate(raw.get("tools", []))
    )
    names = [t.name for t in values["tools"]]
    if len(names) != len(set(names)):
        raise ConfigError(f"{where}: tools: two tools share a name ({names})")
    if "response_format" in raw:
        values["response_format"] = _response_format(raw["response_format"], path, uploaded)
    if "check" in raw:
        values["check"] = _check(raw["check"], values.get("response_format"), where)
    if "grade" in raw:
        values["grade"] = _grade(raw["grade"], f"{where}: grade")
    return Profile(**values)


def _grade(raw: Any, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or set(raw) - GRADE_KEYS:
        raise ConfigError(f"{where} should be a table of {sorted(GRADE_KEYS)}")
    return {key: _typed(value, str, f"{where}: {key}") for key, value in raw.items()}


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else "number"
        raise ConfigError(f"{where} should be a {expected}, not {value!r}")
    return value


def _tool(raw: Any, where: str) -> Tool:
    if not isinstance(raw, dict) or not isinstance(raw.get("function"), str):
        raise ConfigError(f'{where}: needs function = "module:callable"')
    function = raw["function"]
    if not FUNCTION.fullmatch(function):
        raise ConfigError(f'{where}: function {function!r} should look like "module:callable"')
    params = raw.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: parameters should be a JSON schema table")
    name = raw.get("name") or function.split(":")[1]
    return Tool(
        name=name, function=function, description=raw.get("description", ""), parameters=params
    )


def _response_format(raw: Any, path: Path, uploaded: bool) -> dict[str, Any]:
    where = f"{path}: response_format"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} should be a table with name and schema (or schema_file)")
    schema = raw.get("schema")
    if uploaded and "schema_file" in raw:
        raise ConfigError(
            f"{where}: schema_file cannot be used in a profile sent to the page (the server "
            "opens no file an upload names): write the schema inline, schema = { ... }"
        )
    if schema is None and "schema_file" in raw:
        schema_path = path.parent / raw["schema_file"]
        try:
            import json

            schema = json.loads(schema_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where}: schema_file {schema_path}: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ConfigError(f'{where}: schema should be a JSON schema with type = "object"')
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(f"{where}: invalid JSON schema: {exc.message}") from None
    return {
        "name": raw.get("name", "answer"),
        "schema": schema,
        "strict": bool(raw.get("strict", True)),
    }


def _check(raw: Any, fmt: dict[str, Any] | None, where: str) -> dict[str, Any]:
    where = f"{where}: check"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} should be a table with question and compare")
    if unknown := sorted(set(raw) - CHECK_KEYS):
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {sorted(CHECK_KEYS)}"
        )
    fields = set(((fmt or {}).get("schema") or {}).get("properties") or {})
    # {question} is the row's own question (unless the answer has a field of that name).
    named = "the fields of response_format or {question}" if fmt else "{question} or {answer}"
    known = (fields or {"answer"}) | {"question"}
    if fmt and "question" not in raw:
        raise ConfigError(f'{where}: needs question, e.g. question = "{{{sorted(fields)[0]}}}"')
    question = _typed(raw.get("question", "{question}"), str, f"{where}: question")
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(question) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"{where}: question {question!r}: {exc}") from None
    if not used or used - known:
        raise ConfigError(
            f"{where}: question should name {named} in braces, e.g. "
            f"{{{sorted(known)[0]}}}; it names {sorted(used) or 'none'}"
        )
    new = raw.get("new", False)
    if not isinstance(new, bool):
        raise ConfigError(f"{where}: new should be true or false, not {new!r}")
    if new and "question" in used and "question" not in fields:
        raise ConfigError(
            f"{where}: new = true checks the problem an answer writes, so question should be "
            "made of the answer's fields, not {question} (the request itself)"
        )
    compare = raw.get("compare", "")
    if fmt and compare not in fields:
        raise ConfigError(f"{where}: compare should be one of the answer's fields {sorted(fields)}")
    if not fmt and compare:
        raise ConfigError(
            f"{where}: compare needs a response_format (without one, the whole answer is compared)"
        )
    attempts = _typed(raw.get("attempts", 3), int, f"{where}: attempts")
    if not 1 <= attempts <= 10:
        raise ConfigError(f"{where}: attempts should be 1 to 10, not {attempts}")
    instructions = _typed(
        raw.get("instructions", CHECK_INSTRUCTIONS), str, f"{where}: instructions"
    )
    return {
        "question": question,
        "compare": compare,
        "instructions": instructions,
        "attempts": attempts,
        "new": new,
    }


def tool_allowlist(text: str) -> frozenset[str]:
    """The tools an operator allows (ASKBATCH_UI_TOOLS): `module:callable`, comma-separated."""
    allowed = frozenset(t.strip() for t in text.split(",") if t.strip())
    if bad := sorted(t for t in allowed if not FUNCTION.fullmatch(t)):
        raise ConfigError(f'{UI_TOOLS}: {bad[0]!r} should look like "module:callable"')
    return allowed


def check_allowed(tools: Collection[Tool], allowed: Collection[str], where: str) -> None:
    """Refuse a tool that is not on the operator's allowlist, by its name alone: nothing is
    imported. For profiles from the page, and for jobs started there (on every worker)."""
    for tool in tools:
        if tool.function not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise ConfigError(
                f"{where}: tool {tool.name!r} ({tool.function}) is not allowed for jobs from "
                f"the page; the server's {UI_TOOLS} lists the tools they may use (now: {listed})"
            )
