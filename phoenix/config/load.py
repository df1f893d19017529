"""Read config files (JSON or YAML) into models; every problem names the file and the JSON path."""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError, Problem
from .files import SUFFIXES
from .limits import human_seconds

M = TypeVar("M", bound=BaseModel)

Loc = tuple[str | int, ...]


def find(config_dir: Path, stem: str) -> Path:
    """The config file for stem (JSON preferred, then YAML); a ConfigError if there is none or several."""
    found = [config_dir / f"{stem}{s}" for s in SUFFIXES if (config_dir / f"{stem}{s}").exists()]
    if not found:
        raise ConfigError([Problem(str(config_dir / f"{stem}.json"), "$", "file not found (JSON or YAML expected)")])
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ConfigError([Problem(str(found[0]), "$", f"several versions of this file ({names}); keep one")])
    return found[0]


def _problem(path: Path, message: str, where: str = "$") -> ConfigError:
    return ConfigError([Problem(str(path), where, message)])


def read(path: Path) -> Any:
    """Parse a JSON or YAML file; syntax errors become Problems with line and column."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as e:
        raise ConfigError([Problem(str(path), "$", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError([Problem(str(path), "$", f"invalid YAML{where}: {getattr(e, 'problem', e)}")]) from None


# ------------------------------------------------------------------------------------------- validating


def json_path(loc: tuple[Any, ...]) -> str:
    """('lxc_configs', '950', 'memory_mb') -> $.lxc_configs["950"].memory_mb"""
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f'["{part}"]'
    return out


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that holds the last key of loc (to suggest a key for a typo)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            fld = current.model_fields.get(part) or next(
                (f for f in current.model_fields.values() if f.alias == part), None)
            if fld is None:
                return None
            current = _unwrap(fld.annotation)
        elif isinstance(current, tuple):  # (dict/list value type)
            current = current[0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """The model inside Optional[...], dict[str, M] or list[M]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return (inner,) if getattr(annotation, "__origin__", None) in (dict, list) else inner
        if isinstance(inner, tuple):
            return inner
    return annotation


def _bounds(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """'greater than 0 and at most 604800 (7 days)' for a field in seconds (its name ends in _s), else ''."""
    holder = _model_at(model, loc)
    field = holder.model_fields.get(str(loc[-1])) if holder and loc else None
    if field is None or not str(loc[-1]).endswith("_s"):
        return ""
    low = next((getattr(m, "gt", None) for m in field.metadata if getattr(m, "gt", None) is not None), None)
    high = next((getattr(m, "le", None) for m in field.metadata if getattr(m, "le", None) is not None), None)
    parts = ([f"greater than {low:g}"] if low is not None else []) + \
            ([f"at most {high:g} ({human_seconds(high)})"] if high is not None else [])
    return " and ".join(parts)


def _message(model: type[BaseModel], err: ErrorDetails, loc: tuple[Any, ...]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        holder = _model_at(model, loc)
        renamed: dict[str, str] = getattr(holder, "renamed", {})
        if loc[-1] in renamed:
            new = renamed[str(loc[-1])]
            return f"{loc[-1]} is the old spelling of {new}, which is set too: keep {new} and remove {loc[-1]}"
        names = [f.alias or n for n, f in holder.model_fields.items()] if holder else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed keys: {', '.join(names)}" if names else "")
        return f"unknown key {loc[-1]!r}{hint}"
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    bounds = _bounds(model, loc) if kind in ("finite_number", "greater_than", "less_than_equal") else ""
    if bounds:
        msg = f"a number of seconds {bounds} is expected"
    value = err.get("input")
    if kind not in ("model_type", "dict_type") and not isinstance(value, dict | list):
        got = json.dumps(value, default=str, ensure_ascii=False)
        msg += f" (got {got if len(got) <= 80 else got[:60] + '…'})"
    return msg


def problems_of(error: ValidationError, model: type[BaseModel], file: str) -> list[Problem]:
    """One Problem per pydantic error, with the JSON path and, for typos, the key meant."""
    out = []
    for err in error.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "constrained-"))))
        out.append(Problem(file, json_path(loc), _message(model, err, loc)))
    return out


def notes_of(model: type[BaseModel], data: Any, file: str, loc: Loc = ()) -> list[Problem]:
    """Deprecation notes: keys of an older format found in valid data (the models' `renamed` and `retired`)."""
    if not isinstance(data, dict):
        return []
    renamed, retired, inner = _note_plan(model)
    out = [Problem(file, json_path((*loc, key)), f"deprecated, use {new}") for key, new in renamed.items() if key in data]
    out += [Problem(file, json_path((*loc, key)), why) for key, why in retired.items() if key in data]
    for key, shape, sub in inner:
        value = data.get(key)
        if shape == "one":
            out += notes_of(sub, value, file, (*loc, key))
        elif shape == "each" and isinstance(value, dict):
            out += [n for k, v in value.items() for n in notes_of(sub, v, file, (*loc, key, k))]
        elif shape == "each" and isinstance(value, list):
            out += [n for i, v in enumerate(value) for n in notes_of(sub, v, file, (*loc, key, i))]
    return out


@functools.cache
def _note_plan(model: type[BaseModel]) -> tuple[dict[str, str], dict[str, str], list[tuple[str, str, type[BaseModel]]]]:
    """A model's renamed and retired keys, and the fields (key, "one" or "each", model) that may hold more."""
    inner = []
    for name, field in model.model_fields.items():
        sub = _unwrap(field.annotation)
        shape = "each" if isinstance(sub, tuple) else "one"
        sub = sub[0] if isinstance(sub, tuple) else sub
        if isinstance(sub, type) and issubclass(sub, BaseModel) and _has_notes(sub):
            inner.append((field.alias or name, shape, sub))
    return dict(getattr(model, "renamed", {})), dict(getattr(model, "retired", {})), inner


def _has_notes(model: type[BaseModel]) -> bool:
    renamed, retired, inner = _note_plan(model)
    return bool(renamed or retired or inner)


def load_model(path: Path, model: type[M]) -> tuple[M, list[Problem]]:
    """Read and validate one file: the model, and the deprecation notes for the caller to show once."""
    data = read(path)
    if not isinstance(data, dict):
        raise _problem(path, "expected an object at the top level")
    try:
        return model.model_validate(data), notes_of(model, data, str(path))
    except ValidationError as e:
        raise ConfigError(problems_of(e, model, str(path))) from None
