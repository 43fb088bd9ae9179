"""Reading the Redis Lua scripts, kept as `.lua` files in a `lua/` folder of their package."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def script(package: str, name: str) -> str:
    """The text of `<package>/lua/<name>.lua` (package data, so it ships with the wheel)."""
    return (resources.files(package) / "lua" / f"{name}.lua").read_text(encoding="utf-8")
