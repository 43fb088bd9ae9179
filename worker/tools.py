"""Running the function tools a model asks for, and keeping count of them for the row."""

from __future__ import annotations

import importlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.errors import ConfigError
from worker.profile import Tool

MAX_OUTPUT_CHARS = 20_000  # a tool's output goes back into the prompt: keep it bounded


def resolve(tool: Tool) -> Callable[..., Any]:
    """Import a tool's callable; a bad reference is a configuration error, found up front."""
    module_name, _, attr = tool.function.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"tool {tool.name!r}: cannot import {tool.function!r}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"tool {tool.name!r}: {tool.function!r} is not callable")
    return fn


@dataclass
class ToolLog:
    """The tool calls of one row: names for the `tool_calls` column, errors for `error`."""

    calls: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def cell(self) -> str:
        return ", ".join(f"{name} x{n}" for name, n in sorted(self.calls.items()))


class ToolBox:
    """The profile's tools, imported once per process and called with the model's arguments."""

    def __init__(self, tools: tuple[Tool, ...]) -> None:
        self.tools = {t.name: t for t in tools}
        self.functions = {t.name: resolve(t) for t in tools}

    def __bool__(self) -> bool:
        return bool(self.tools)

    def call(self, name: str, arguments: str, log: ToolLog) -> str:
        """The output string for the model. A tool that fails is reported to the model as an
        error output (so it can recover) and recorded in the row."""
        log.calls[name] += 1
        fn = self.functions.get(name)
        if fn is None:
            return self._error(log, name, f"no tool named {name!r}")
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments are not a JSON object")
        except ValueError as exc:
            return self._error(log, name, f"bad arguments {arguments!r}: {exc}")
        try:
            out = fn(**args)
        except Exception as exc:  # the tool is user code: anything can happen
            return self._error(log, name, f"{type(exc).__name__}: {exc}")
        text = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False, default=str)
        return text[:MAX_OUTPUT_CHARS]

    @staticmethod
    def _error(log: ToolLog, name: str, message: str) -> str:
        log.errors.append(f"tool {name}: {message}")
        return json.dumps({"error": message}, ensure_ascii=False)
