"""Read config files (JSON or YAML) into models; every problem names the file and the JSON path."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, Problem
from .files import SUFFIXES

M = TypeVar("M", bound=BaseModel)


def find(config_dir: Path, stem: str) -> Path:
    """The config file for stem (JSON preferred, then YAML); a ConfigError if there is none or several."""
    found = [config_dir / f"{stem}{s}" for s in SUFFIXES if (config_dir / f"{stem}{s}").exists()]
    if not found:
        raise ConfigError([Problem(str(config_dir / f"{stem}.json"), "$", "file not found (JSON or YAML expected)")])
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ConfigError([Problem(str(found[0]), "$", f"several versions of this file ({names}); keep one")])
    return found[0]


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
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return (inner,) if getattr(annotation, "__origin__", None) in (dict, list) else inner
        if isinstance(inner, tuple):
            return inner
    return annotation


def _message(model: type[BaseModel], err: dict[str, Any]) -> str:
    kind, loc, msg = err["type"], tuple(err["loc"]), err["msg"]
    if kind == "extra_forbidden":
        holder = _model_at(model, loc)
        names = [f.alias or n for n, f in holder.model_fields.items()] if holder else []
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; allowed keys: {', '.join(names)}" if names else "")
        return f"unknown key {loc[-1]!r}{hint}"
    if kind == "missing":
        return "required key is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = err.get("input")
    if kind not in ("model_type", "dict_type") and not isinstance(value, dict | list):
        msg += f" (got {json.dumps(value, default=str)})"
    return msg


def problems_of(error: ValidationError, model: type[BaseModel], file: str) -> list[Problem]:
    """One Problem per pydantic error, with the JSON path and, for typos, the key meant."""
    out = []
    for err in error.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "constrained-"))))
        out.append(Problem(file, json_path(loc), _message(model, err)))
    return out


def load_model(path: Path, model: type[M]) -> M:
    """Read and validate one file."""
    data = read(path)
    if not isinstance(data, dict):
        raise ConfigError([Problem(str(path), "$", "expected an object at the top level")])
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(problems_of(e, model, str(path))) from None
