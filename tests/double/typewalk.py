"""A walk of JSON values against the openai SDK's type annotations: types, extra, missing keys."""

from __future__ import annotations

import collections.abc
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import pydantic
import typing_extensions as te

_LIST_ORIGINS = frozenset({list, tuple, set, collections.abc.Iterable, collections.abc.Sequence})
_DICT_ORIGINS = frozenset({dict, collections.abc.Mapping})
_WRAPPERS = frozenset({te.Required, te.NotRequired, te.ReadOnly, typing.ClassVar})
_UNION_ORIGINS = frozenset({typing.Union, types.UnionType})
_SCALARS: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    type(None): (type(None),),
}
_JSON_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "array", dict: "object"}


@dataclass
class Shape:
    """What one annotation expects of a JSON value, worked out once per annotation."""

    what: str  # any, scalar, literal, list, dict, union, object
    name: str
    scalars: tuple[type, ...] = ()
    values: frozenset = frozenset()  # a literal's values
    item: Shape | None = None  # a list's items, a dict's values
    members: tuple[Shape, ...] = ()  # a union's
    discriminator: str | None = None
    fields: dict[str, Shape] = field(default_factory=dict)  # an object's, by wire key
    required: frozenset[str] = frozenset()
    tags: dict[str, frozenset] = field(default_factory=dict)  # literal fields of an object
    source: Any = None  # keeps the annotation alive while it keys the cache


_SHAPES: dict[int, Shape] = {}


def shape_of(tp: Any) -> Shape:
    """The cached shape of an annotation (keyed by identity: SDK types live for the process)."""
    shape = _SHAPES.get(id(tp))
    if shape is None:
        shape = _build(tp)
        _SHAPES[id(tp)] = shape
    return shape


def _build(tp: Any) -> Shape:
    source, discriminator = tp, None
    while True:  # peel Annotated (keeping a discriminator), Required, aliases
        origin = te.get_origin(tp)
        if origin is te.Annotated:
            for meta in tp.__metadata__:
                discriminator = getattr(meta, "discriminator", None) or discriminator
            tp = tp.__origin__
        elif origin in _WRAPPERS:
            tp = te.get_args(tp)[0]
        elif isinstance(tp, te.TypeAliasType):
            tp = tp.__value__
        else:
            break
    name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
    args = te.get_args(tp)
    if tp in _SCALARS:
        return Shape("scalar", name, scalars=_SCALARS[tp], source=source)
    if origin in (Literal, te.Literal):
        return Shape("literal", name, values=frozenset(args), source=source)
    if origin in _UNION_ORIGINS:
        shape = Shape("union", name, discriminator=discriminator, source=source)
        shape.members = tuple(shape_of(arg) for arg in args)
        return shape
    if origin in _LIST_ORIGINS or getattr(origin, "__name__", "") == "SequenceNotStr":
        return Shape("list", name, item=shape_of(args[0] if args else Any), source=source)
    if origin in _DICT_ORIGINS:
        return Shape("dict", name, item=shape_of(args[1] if len(args) == 2 else Any), source=source)
    if isinstance(tp, type) and (issubclass(tp, pydantic.BaseModel) or te.is_typeddict(tp)):
        shape = Shape("object", tp.__name__, source=source)
        _SHAPES[id(source)] = shape  # before the fields: a type may contain itself
        annotations, required = _td(tp) if te.is_typeddict(tp) else _model_fields(tp)
        shape.required = required
        shape.fields = {key: shape_of(hint) for key, hint in annotations.items()}
        shape.tags = {
            key: inner.values for key, inner in shape.fields.items() if inner.what == "literal"
        }
        return shape
    return Shape("any", name, source=source)  # object, Any, files: not judged


def _model_fields(cls: type[pydantic.BaseModel]) -> tuple[dict[str, Any], frozenset[str]]:
    annotations, required = {}, set()
    for name, info in cls.model_fields.items():
        key = info.alias or name
        tags = [m for m in info.metadata if getattr(m, "discriminator", None)]
        annotations[key] = te.Annotated[info.annotation, tags[0]] if tags else info.annotation
        if info.is_required():
            required.add(key)
    return annotations, frozenset(required)


def _td(cls: type) -> tuple[dict[str, Any], frozenset[str]]:
    hints = te.get_type_hints(cls, include_extras=True)
    # Under `from __future__ import annotations` __required_keys__ only knows totality:
    # read Required/NotRequired off the resolved hints.
    required = set(cls.__required_keys__)
    annotations = {}
    for name, hint in hints.items():
        key, inner = name, hint
        while te.get_origin(inner) is te.Annotated:
            for meta in inner.__metadata__:
                key = getattr(meta, "alias", None) or key
            inner = inner.__origin__
        if te.get_origin(inner) is te.Required:
            required.add(name)
        elif te.get_origin(inner) is te.NotRequired:
            required.discard(name)
        annotations[key] = hint
        if key != name and name in required:
            required.discard(name)
            required.add(key)
    return annotations, frozenset(required)


def json_type(value: object) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def _at(path: str) -> str:
    return path or "(body)"


def check(shape: Shape, value: object, path: str, out: list[str]) -> None:
    """Append to ``out`` what is wrong with ``value`` as a value of ``shape``."""
    what = shape.what
    if what == "any":
        return
    if what == "scalar":
        if not _scalar_fits(shape, value):
            out.append(f"{_at(path)}: expected {shape.name}, got {json_type(value)}")
    elif what == "literal":
        if not _literal_fits(shape, value):
            allowed = ", ".join(sorted(repr(v) for v in shape.values)[:8])
            out.append(f"{_at(path)}: {value!r} is not one of {allowed}")
    elif what == "list":
        if not isinstance(value, list):
            out.append(f"{_at(path)}: expected an array, got {json_type(value)}")
            return
        for index, item in enumerate(value):
            check(shape.item, item, f"{path}[{index}]", out)
    elif what == "dict":
        if not isinstance(value, dict):
            out.append(f"{_at(path)}: expected an object, got {json_type(value)}")
            return
        for key, item in value.items():
            check(shape.item, item, f"{path}.{key}" if path else key, out)
    elif what == "union":
        _check_union(shape, value, path, out)
    else:
        check_object(shape, value, path, out)


def check_object(
    shape: Shape,
    value: object,
    path: str,
    out: list[str],
    *,
    skip: frozenset[str] = frozenset(),
    values: bool = True,
) -> None:
    """An object's keys: none unknown (or in ``skip``), none required missing, values checked
    (unless ``values`` is false: query strings)."""
    if not isinstance(value, dict):
        out.append(f"{_at(path)}: expected a {shape.name} object, got {json_type(value)}")
        return
    fields = shape.fields
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        inner = fields.get(key)
        if inner is None or key in skip:
            out.append(f"{where}: unexpected key {key!r} (not in {shape.name})")
        elif values:
            check(inner, item, where, out)
    missing = shape.required - value.keys() - skip
    for key in sorted(missing):
        out.append(f"{_at(path)}: missing required key {key!r} ({shape.name})")


def _scalar_fits(shape: Shape, value: object) -> bool:
    return isinstance(value, shape.scalars) and (
        not isinstance(value, bool) or bool in shape.scalars
    )


def _literal_fits(shape: Shape, value: object) -> bool:
    try:
        found = value in shape.values
    except TypeError:  # unhashable
        return False
    # True == 1 in Python; JSON keeps them apart.
    return found and any(v == value and type(v) is type(value) for v in shape.values)


def _fits(shape: Shape, value: object) -> bool:
    """Whether a union member could hold this value at all: its JSON type, and for an object
    no tag key ("type", "role", "event", ...) holding a literal the member does not allow."""
    what = shape.what
    if what in ("any", "union"):
        return True
    if what == "scalar":
        return _scalar_fits(shape, value)
    if what == "literal":
        return _literal_fits(shape, value)
    if what == "list":
        return isinstance(value, list)
    if not isinstance(value, dict):
        return False
    if what == "dict":
        return True
    for key, allowed in shape.tags.items():
        if key in value:
            try:
                if value[key] not in allowed:
                    return False
            except TypeError:
                return False
    return True


def _check_union(shape: Shape, value: object, path: str, out: list[str]) -> None:
    members = shape.members
    candidates = [m for m in members if _fits(m, value)]
    if not candidates:
        tag = shape.discriminator
        if tag and isinstance(value, dict):
            names = ", ".join(m.name for m in members[:6])
            out.append(f"{_at(path)}: no variant takes {tag}={value.get(tag)!r} ({names}, …)")
            return
        if isinstance(value, dict):
            candidates = [m for m in members if m.what == "object"]
        if not candidates:
            names = " | ".join(m.name for m in members[:6])
            out.append(f"{_at(path)}: {json_type(value)} {value!r:.60} fits none of {names}")
            return
    best: list[str] | None = None
    for member in candidates:
        found: list[str] = []
        check(member, value, path, found)
        if not found:
            return
        if best is None or len(found) < len(best):
            best = found
    out.extend(best or ())
