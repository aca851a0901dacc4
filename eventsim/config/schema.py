"""Shared pieces of the YAML schemas: a strict base model, field types, and the
translation of pydantic errors into one-line :class:`ConfigError` messages that
name the file, the line and the field, with a hint."""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .. import units
from .yamlfile import YamlDoc


def did_you_mean(word: str, choices) -> str | None:
    """A 'did you mean' hint for ``word`` among ``choices``, or a list of choices."""
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"expected one of: {', '.join(choices)}" if choices else None


class Strict(BaseModel):
    """Base of every schema model: unknown fields are errors with a suggestion."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = set()
            for name, info in cls.model_fields.items():
                allowed.add(info.alias or name)
            for key in data:
                if key not in allowed:
                    raise PydanticCustomError(
                        "unknown_field",
                        "unknown field '{field}'",
                        {"field": key, "hint": did_you_mean(key, allowed)},
                    )
        return data


def _duration(value):
    try:
        return units.to_ms(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc), {"hint": "write e.g. '5 ms' or '2 s'"}) \
            from None


def _finite_nonneg(value):
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise PydanticCustomError("number", f"expected a number, got {value!r}") from None
        else:
            raise PydanticCustomError("number", f"expected a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise PydanticCustomError("number", f"{value!r} is not finite")
    if value < 0:
        raise PydanticCustomError("number", f"{value!r} is negative", {"hint": "use a value >= 0"})
    return float(value)


def _probability(value):
    value = _finite_nonneg(value)
    if value > 1:
        raise PydanticCustomError("number", f"{value!r} is not a probability",
                                  {"hint": "use a value in [0, 1]"})
    return value


def _positive_int(value):
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise PydanticCustomError("integer", f"expected a positive integer, got {value!r}")
    if value < 1:
        raise PydanticCustomError("integer", f"expected a positive integer, got {value!r}")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
"""A duration in ms, written as '5 ms', '2 s' or a number of ms."""
NonNeg = Annotated[float, BeforeValidator(_finite_nonneg)]
Probability = Annotated[float, BeforeValidator(_probability)]
PosInt = Annotated[int, BeforeValidator(_positive_int)]


def _data_path(data, loc) -> tuple:
    """Map a pydantic ``loc`` onto keys that exist in the YAML data.

    Union tags and validator names that pydantic inserts are skipped.
    """
    path: list = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
    return tuple(path)


def validate(model: type[BaseModel], doc: YamlDoc, data=None, base: tuple = ()):
    """Validate ``data`` (default: the whole document) against ``model``.

    The first error becomes a one-line ConfigError naming the file, line and field.
    """
    data = doc.data if data is None else data
    if data is None and not base:
        raise doc.error(base, "the file is empty", "a network or scenario file is a mapping "
                                                   "of fields such as name: ...")
    if not isinstance(data, dict):
        raise doc.error(base, f"expected a mapping of fields, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        ctx = err.get("ctx") or {}
        path = base + _data_path(data, err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        hint = ctx.get("hint")
        if err["type"] == "unknown_field":
            path = (*path, ctx["field"])
        elif err["type"] == "missing":
            missing = err["loc"][-1]
            path = (*path, missing) if not path or path[-1] != missing else path
            message = f"required field {missing!r} is missing"
        elif err["type"] == "union_tag_not_found":
            if isinstance(err.get("input"), dict):
                path = (*path, "kind")
                message = "required field 'kind' is missing"
            else:
                message = f"expected a mapping of fields, got {type(err.get('input')).__name__}"
        elif err["type"] == "union_tag_invalid":
            path = (*path, "kind")
            message = f"unknown kind {ctx.get('tag')!r}"
            expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
            hint = did_you_mean(ctx.get("tag"), expected)
        elif err["type"] == "literal_error":
            expected = [t.strip(" '") for t in str(ctx.get("expected", "")).split(" or ")]
            expected = [e for part in expected for e in part.split(", ")]
            hint = did_you_mean(err.get("input"), [e.strip("'") for e in expected])
            message = f"invalid value {err.get('input')!r}"
        elif err["type"] == "list_type":
            message = f"expected a list, got {err.get('input')!r}"
            hint = "write a YAML list, e.g. [a, b]"
        raise doc.error(path, message, hint) from None
