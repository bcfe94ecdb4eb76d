"""Check a JSON document against the records it will become, before any rule sees it.

A saved snapshot or findings file is input like any other: it may be truncated,
hand-edited, or hostile. `check(value, shape)` walks it once and raises
`SchemaError` naming the first wrong place ("$.sockets[3].recv_q: want an
integer, got 'x'"), so `from_dict` only ever builds records from values of the
type their fields declare, and no rule meets a string where it counts.

The shapes come from the records themselves: `of_record(Socket)` reads the
fields and their annotations (`int | None`, `list[Owner]`, `tuple[int, int]`,
other records by name), so a field added to a record is checked without a
second list to keep in step. Where the JSON form differs from the record (a
state name for a state number, a list for a dict keyed by pid) the caller
passes an override. Every value is bounded: integers to 64 bits, numbers
finite, strings to MAX_STR characters, nesting to MAX_DEPTH.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import typing
from collections.abc import Iterable
from typing import Any

MAX_DEPTH = 64  # our documents nest 6 deep; Evidence values and Fix params a little more
MAX_STR = 1 << 20  # characters
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # the kernel's widest: u64 counters, s64 values


class SchemaError(ValueError):
    """The document differs from its schema at `where`."""

    def __init__(self, where: str, want: str, got: Any) -> None:
        shown = repr(got)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        super().__init__(f"{where}: want {want}, got {shown}")
        self.where = where


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


class Shape:
    want = "?"

    def check(self, value: Any, where: str, depth: int) -> None:
        raise NotImplementedError

    def __or__(self, other: Any) -> Shape:  # `int | None` in an annotation
        return Opt(self) if other is None else NotImplemented

    def __ror__(self, other: Any) -> Shape:
        return Opt(self) if other is None else NotImplemented


class _Int(Shape):
    want = "an integer"

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) is not int or not INT_MIN <= value <= INT_MAX:
            raise SchemaError(where, "a 64-bit integer", value)


class _Num(Shape):
    want = "a number"

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) not in (int, float) or not math.isfinite(value) \
                or abs(value) > 2.0**64:
            raise SchemaError(where, "a finite number", value)


class _Str(Shape):
    want = "a string"

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) is not str or len(value) > MAX_STR:
            raise SchemaError(where, f"a string of at most {MAX_STR} characters", value)


class _Bool(Shape):
    want = "true or false"

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) is not bool:
            raise SchemaError(where, self.want, value)


class _Json(Shape):
    """Any JSON value, bounded (Evidence values, Fix params)."""

    want = "a JSON value"

    def check(self, value: Any, where: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise SchemaError(where, f"nesting at most {MAX_DEPTH} deep", value)
        if isinstance(value, dict):
            for k, v in value.items():
                self.check(v, f"{where}.{k}", depth + 1)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.check(v, f"{where}[{i}]", depth + 1)
        elif isinstance(value, str):
            STR.check(value, where, depth)
        elif type(value) in (int, float):
            NUM.check(value, where, depth)
        elif value is not None and type(value) is not bool:
            raise SchemaError(where, self.want, value)


INT, NUM, STR, BOOL, JSON = _Int(), _Num(), _Str(), _Bool(), _Json()


class Opt(Shape):
    def __init__(self, inner: Shape) -> None:
        self.inner = inner
        self.want = f"{inner.want} or null"

    def check(self, value: Any, where: str, depth: int) -> None:
        if value is not None:
            self.inner.check(value, where, depth)


class OneOf(Shape):
    def __init__(self, values: Iterable[Any]) -> None:
        self.values = tuple(values)
        self.want = "one of " + ", ".join(repr(v) for v in self.values[:12])

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) not in (str, int) or value not in self.values:
            raise SchemaError(where, self.want, value)


class Where(Shape):
    """`inner`, and `test(value)` true: a value the record's type allows but its use does not."""

    def __init__(self, inner: Shape, test: Any, want: str) -> None:
        self.inner, self.test, self.want = inner, test, want

    def check(self, value: Any, where: str, depth: int) -> None:
        self.inner.check(value, where, depth)
        try:
            ok = self.test(value)
        except ValueError:
            ok = False
        if not ok:
            raise SchemaError(where, self.want, value)


class List(Shape):
    def __init__(self, item: Shape) -> None:
        self.item = item
        self.want = f"a list of {item.want}"

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) not in (list, tuple):  # a tuple: a to_dict() not yet through JSON
            raise SchemaError(where, "a list", value)
        if depth > MAX_DEPTH:
            raise SchemaError(where, f"nesting at most {MAX_DEPTH} deep", "...")
        for i, v in enumerate(value):
            self.item.check(v, f"{where}[{i}]", depth + 1)


class Tuple(Shape):
    def __init__(self, *items: Shape) -> None:
        self.items = items
        self.want = f"a list of {len(items)}"

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) not in (list, tuple) or len(value) != len(self.items):
            raise SchemaError(where, self.want, value)
        for i, (shape, v) in enumerate(zip(self.items, value)):
            shape.check(v, f"{where}[{i}]", depth + 1)


class Map(Shape):
    """A JSON object with any keys; `digit_keys` when the record's dict is keyed by int."""

    def __init__(self, value: Shape, digit_keys: bool = False) -> None:
        self.value, self.digit_keys = value, digit_keys
        self.want = f"an object of {value.want}"

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) is not dict:
            raise SchemaError(where, "an object", value)
        if depth > MAX_DEPTH:
            raise SchemaError(where, f"nesting at most {MAX_DEPTH} deep", "...")
        for k, v in value.items():
            STR.check(k, where, depth)
            if self.digit_keys and not (k.isascii() and k.isdigit()):
                raise SchemaError(where, "numeric keys", k)
            self.value.check(v, f"{where}.{k}", depth + 1)


class Obj(Shape):
    """A JSON object with these keys (`required` must be there); others only of `rest`."""

    def __init__(self, fields: dict[str, Shape], required: Iterable[str], name: str = "",
                 rest: Shape | None = None) -> None:
        self.fields = fields
        self.required = tuple(required)
        self.rest = rest  # the shape of other keys; None: no other keys
        self.want = f"an object ({name})" if name else "an object"

    def check(self, value: Any, where: str, depth: int) -> None:
        if type(value) is not dict:
            raise SchemaError(where, self.want, value)
        if depth > MAX_DEPTH:
            raise SchemaError(where, f"nesting at most {MAX_DEPTH} deep", "...")
        for key in self.required:
            if key not in value:
                raise SchemaError(where, f"the key {key!r}", sorted(value)[:8])
        for key, v in value.items():
            shape = self.fields.get(key, self.rest)
            if shape is None:
                raise SchemaError(f"{where}.{key}", "no such key; known: "
                                  + ", ".join(self.fields), v)
            shape.check(v, f"{where}.{key}", depth + 1)


def check(value: Any, shape: Shape, where: str = "$") -> None:
    shape.check(value, where, 0)


# ---------------------------------------------------------------- shapes from records

class _Generic:
    def __init__(self, make: Any) -> None:
        self.make = make

    def __getitem__(self, args: Any) -> Shape:
        return self.make(*(args if isinstance(args, tuple) else (args,)))


def _tuple(*items: Any) -> Shape:
    if len(items) == 2 and items[1] is Ellipsis:
        return List(items[0])
    return Tuple(*items)


def _dict(key: Shape, value: Shape) -> Shape:
    return Map(value, digit_keys=key is INT)


_BUILTIN = {"int": INT, "float": NUM, "str": STR, "bool": BOOL, "Any": JSON,
            "Optional": _Generic(Opt),
            "list": _Generic(List), "Sequence": _Generic(List), "dict": _Generic(_dict),
            "tuple": _Generic(_tuple)}
_cache: dict[type, Obj] = {}


def _fields(cls: Any) -> list[tuple[str, str, bool]]:
    """(name, annotation text, required) of a dataclass or a NamedTuple."""
    if dataclasses.is_dataclass(cls):
        return [(f.name, typing.cast(str, f.type), f.default is dataclasses.MISSING
                 and f.default_factory is dataclasses.MISSING)
                for f in dataclasses.fields(cls)]
    defaults = cls._field_defaults
    return [(name, _text(cls.__annotations__[name]), name not in defaults) for name in cls._fields]


def _text(note: Any) -> str:
    """NamedTuple keeps its string annotations as ForwardRef (typing.NamedTupleMeta)."""
    if isinstance(note, typing.ForwardRef):
        return note.__forward_arg__
    return note if isinstance(note, str) else note.__name__


def _is_record(obj: Any) -> bool:
    return isinstance(obj, type) and (dataclasses.is_dataclass(obj) or hasattr(obj, "_fields"))


def annotation(text: str, module: str) -> Shape:
    """The shape an annotation (as `from __future__ import annotations` keeps it) names.

    Evaluated with shapes in place of types, so it works on Python 3.9, where
    `int | None` is not an expression that types allow.
    """
    return eval(text, {"__builtins__": {}}, _Scope(module))  # noqa: S307 - our own annotations


class _Scope(dict):
    """Names in an annotation: the builtin shapes, then the module's records (on use)."""

    def __init__(self, module: str) -> None:
        super().__init__(_BUILTIN)
        self.module = module

    def __missing__(self, name: str) -> Shape:
        obj: Any = vars(sys.modules[self.module]).get(name)
        if not _is_record(obj):
            raise NameError(f"annotation names {name!r}, which is no record of {self.module}")
        return of_record(obj)


def of_record(cls: type, overrides: dict[str, Shape] | None = None,
              added: dict[str, Shape] | None = None) -> Obj:
    """The JSON shape of a record: its fields (required when they have no default).

    `overrides` replaces the shape of named fields; `added` admits optional
    keys the JSON form has beside the fields.
    """
    if not overrides and not added and cls in _cache:
        return _cache[cls]
    fields, required = {}, []
    for name, text, needed in _fields(cls):
        fields[name] = (overrides or {}).get(name) or annotation(text, cls.__module__)
        if needed:
            required.append(name)
    fields.update(added or {})
    shape = Obj(fields, required, cls.__name__)
    if not overrides and not added:
        _cache[cls] = shape
    return shape
