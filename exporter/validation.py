"""Config problems in the words of the file: `<path>: <value> <problem>`, shared by both files.

pydantic's own messages ("Input should be a valid integer") neither show the value nor speak
YAML, and an unknown key gets no hint. Values under a secret key (target headers, basic-auth
hashes) are never shown, and neither is a whole mapping or list: either may hold such a value.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Final, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

INVALID: Final = object()  # field_value's answer for a field whose value is broken
_SHOWN_CHARS = 60

_PROBLEMS = {
    "int_type": "is not an integer",
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_type": "is not a number",
    "float_parsing": "is not a number",
    "bool_type": "is not true or false",
    "bool_parsing": "is not true or false",
    "string_type": "is not a string",
    "list_type": "is not a list",
    "dict_type": "is not a mapping",
    "model_type": "is not a mapping",
    "model_attributes_type": "is not a mapping",
    "greater_than_equal": "is below the minimum {ge}",
    "greater_than": "must be above {gt}",
    "less_than_equal": "is above the maximum {le}",
    "less_than": "must be below {lt}",
    "string_too_short": "is too short: at least {min_length} character(s)",
    "string_pattern_mismatch": "does not match the pattern {pattern}",
}


class StrictModel(BaseModel):
    """The base of every config model: unknown keys and coerced types are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ConfigError(Exception):
    """A configuration that cannot be used; the message lists every problem found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {source}: {p}" for p in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


def read_yaml(path: str | Path) -> object:
    """A config file's parsed YAML; ConfigError naming the file when it cannot be read or parsed."""
    source = str(path)
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, [f"cannot read file: {exc.strerror or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {_yaml_problem(exc)}"]) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{problem} (line {mark.line + 1})" if mark is not None else str(problem)


@dataclass(frozen=True)
class Schema:
    """What the messages need to know of a file's root model."""

    root: type[BaseModel]
    secret_keys: frozenset[str] = frozenset()
    # Free-form mappings whose usual keys are known ("options": Ollama's options), so that
    # `temperature` written one level too high gets `did you mean 'options.temperature'?`.
    nested_keys: Mapping[str, frozenset[str]] = field(default_factory=dict)


def problems_of(exc: ValidationError, schema: Schema) -> list[str]:
    """One line per error of `exc`, a validation of `schema.root`."""
    return [_describe(err, schema) for err in exc.errors()]


def at(path: Iterable[str | int], problem: str) -> str:
    """`problem` prefixed by a YAML path such as `targets[0].url`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return f"{text}: {problem}" if text else problem


# Keys that were renamed: a file written for the old name gets the new one named.
RENAMED = {"backend": "protocol"}


def unknown_key(key: object, known: Iterable[str]) -> str:
    """`unknown key 'intervall', did you mean 'interval'?`"""
    text = f"unknown key {shown(key)}"
    known = list(known)
    if RENAMED.get(str(key)) in known:
        return f"{text}: it is called {RENAMED[str(key)]!r} now"
    nearest = _nearest(str(key), known)
    return f"{text}, did you mean {nearest!r}?" if nearest else text


def _nearest(key: str, known: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def shown(value: object) -> str:
    """A scalar as the file reads it (YAML's true/null), shortened; a container by its kind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return "a very large number"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _describe(err: ErrorDetails, schema: Schema) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "extra_forbidden":
        return at(loc[:-1], _unknown_key(loc[-1], _keys_at(schema.root, loc[:-1]), schema))
    if err["type"] == "missing":
        return at(loc, "is required but not set")
    if loc and loc[-1] == "[key]":  # pydantic's mark for a bad mapping key, after the key
        return at(loc[:-2], "the key " + _problem(err, shown(err["input"])))
    secret = any(part in schema.secret_keys for part in loc)
    value = "the value (not shown)" if secret else shown(err["input"])
    return at(loc, _problem(err, value))


def _unknown_key(key: object, known: list[str], schema: Schema) -> str:
    text = unknown_key(key, known)
    if "did you mean" in text:
        return text
    for parent in sorted(schema.nested_keys.keys() & set(known)):
        nearest = _nearest(str(key), schema.nested_keys[parent])
        if nearest:
            return f"{text}, did you mean '{parent}.{nearest}'?"
    return text


def _problem(err: ErrorDetails, value: str) -> str:
    ctx = err.get("ctx", {})
    if err["type"] == "value_error":
        # Our own validators' messages already say which value is wrong, and how.
        return str(ctx.get("error", err["msg"]))
    if err["type"] == "literal_error":
        expected = str(ctx.get("expected", "")).replace("True", "true").replace("False", "false")
        return f"{value} is not {expected}"
    template = _PROBLEMS.get(err["type"])
    if template is None:
        return f"{value} is invalid: {err['msg']}"
    return f"{value} {template.format(**{k: shown(v) for k, v in ctx.items()})}"


def _keys_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at `loc` (a path inside `root`) accepts."""
    current: Any = root
    for part in loc:
        current = _without_none(current)
        if isinstance(part, int) and get_origin(current) is list:
            current = get_args(current)[0]
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        else:
            return []
    current = _without_none(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _without_none(annotation: Any) -> Any:
    """`X | None` as X; any other type as it is."""
    if get_origin(annotation) in (Union, UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def field_value(model: type[BaseModel], name: str, raw: Mapping[Any, Any]) -> Any:
    """One field of a raw mapping, validated on its own (its default when absent), or INVALID.

    Lets a check that needs only this field run while other fields of the file are broken.
    """
    info = model.model_fields[name]
    if name not in raw:
        return INVALID if info.is_required() else info.get_default(call_default_factory=True)
    try:
        return _adapter(model, name).validate_python(raw[name])
    except (ValidationError, ValueError, TypeError):
        return INVALID


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    annotated: Any = info.annotation
    if info.metadata:  # the field's constraints and validators travel as Annotated metadata
        annotated = Annotated[(annotated, *info.metadata)]
    return TypeAdapter(annotated, config=ConfigDict(strict=True))
