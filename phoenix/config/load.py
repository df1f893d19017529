"""Read config files (JSON or YAML) into models; every problem names the file and the JSON path.

A file is read as people write it: a YAML mapping's keys are strings as in JSON (`900:` is CTID "900"), and
YAML 1.1's base-60 numbers are not resolved (an unquoted MAC stays a string). A key given twice is an error,
not "the last one wins". A file that cannot be read or parsed is a Problem naming it, never a traceback.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError, Problem
from . import rules as R
from .files import SUFFIXES
from .limits import human_seconds

M = TypeVar("M", bound=BaseModel)

Loc = tuple[str | int, ...]


def find(config_dir: Path, stem: str) -> Path:
    """The config file for stem (JSON preferred, then YAML); a ConfigError if there is none or several."""
    try:
        found = [config_dir / f"{stem}{s}" for s in SUFFIXES if (config_dir / f"{stem}{s}").exists()]
    except OSError as e:
        raise ConfigError([Problem(str(config_dir), "$", f"cannot look into this directory: {e.strerror}")]) from None
    if not found:
        raise ConfigError([Problem(str(config_dir / f"{stem}.json"), "$", "file not found (JSON or YAML expected)")])
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ConfigError([Problem(str(found[0]), "$", f"several versions of this file ({names}); keep one")])
    return found[0]


# ------------------------------------------------------------------------------------------------ reading


def _problem(path: Path, message: str, where: str = "$") -> ConfigError:
    return ConfigError([Problem(str(path), where, message)])


def read_text(path: Path) -> str:
    """The file's text (UTF-8, a byte order mark allowed); a ConfigError naming the file and the fix otherwise."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise _problem(path, "is a directory, not a file: the config is one JSON or YAML file; move the "
                             "directory away or point PHOENIX_CONFIG_DIR at the right folder") from None
    except PermissionError:
        raise _problem(path, "cannot be read: permission denied; let the user running Phoenix read it "
                             f"(e.g. chmod u+r {path}, or run Phoenix as the file's owner)") from None
    except OSError as e:
        raise _problem(path, f"cannot be read: {e.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise _problem(path, f"is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, offset {e.start}); "
                             "save the file as UTF-8") from None
    if not text.strip():
        raise _problem(path, "the file is empty: it needs a JSON or YAML object (start from the example "
                             f"etc/{path.stem}.json of Phoenix)")
    return text


def read(path: Path) -> Any:
    """Parse a JSON or YAML file; syntax errors become Problems with line and column."""
    text = read_text(path)
    try:
        data = _parse_json(path, text) if path.suffix == ".json" else _parse_yaml(path, text)
    except RecursionError:
        raise _problem(path, "is nested too deeply to be a Phoenix config (a config is a few levels deep): "
                             "is this the right file?") from None
    if data is None:
        raise _problem(path, "holds no data (only comments?): it needs a JSON or YAML object")
    return data


class _Twice(dict[str, Any]):
    """A JSON object in which keys were given more than once (their names in `twice`)."""

    def __init__(self, pairs: list[tuple[str, Any]]):
        super().__init__(pairs)
        seen: set[str] = set()
        self.twice: list[str] = []
        for key, _ in pairs:
            if key in seen:
                self.twice.append(key)
            seen.add(key)


def _parse_json(path: Path, text: str) -> Any:
    marked = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal marked
        out = dict(items)
        if len(out) == len(items):
            return out
        marked = True
        return _Twice(items)

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as e:
        raise _problem(path, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if marked:
        raise ConfigError(_json_twice(path, data))
    return data


def _json_twice(path: Path, data: Any) -> list[Problem]:
    """Keys given twice in one object, with their JSON path (the objects marked while parsing)."""
    out = []
    stack: list[tuple[Any, Loc]] = [(data, ())]
    while stack:  # not recursive: a deep file is read whole before this
        value, loc = stack.pop()
        if isinstance(value, _Twice):
            out += [Problem(str(path), json_path((*loc, key)), f"key {key!r} is given more than once in this "
                                                               "object; keep one") for key in value.twice]
        if isinstance(value, dict):
            stack += [(v, (*loc, k)) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, (*loc, i)) for i, v in enumerate(value)]
    return sorted(out, key=lambda p: p.path)


# YAML 1.1 resolvers of ints and floats without their base-60 forms (12:34:56 is a string, not 45296).
_INT = re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X)
_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_MERGE = "tag:yaml.org,2002:merge"


class ConfigLoader(yaml.SafeLoader):
    """safe_load's loader, but mapping keys are the strings written and base-60 numbers are not resolved."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # YAML merge keys (<<: *base), as safe_load reads them
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain string, not a list or mapping", key_node.start_mark)
            out[key_node.value] = self.construct_object(value_node, deep=deep)
        return out


ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _yaml_twice(path: Path, root: yaml.Node) -> list[Problem]:
    """Keys given twice in one mapping, with their JSON path and lines (merged keys may be overridden)."""
    out, seen_nodes = [], set()
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if id(node) in seen_nodes:  # an alias: checked where its anchor is
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                if key.tag == _MERGE:
                    stack.append((value, loc))
                    continue
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in lines:
                        out.append(Problem(str(path), json_path((*loc, key.value)),
                                           f"key {key.value!r} is given more than once in this mapping (lines "
                                           f"{lines[key.value]} and {line}); keep one"))
                    lines.setdefault(key.value, line)
                    stack.append((value, (*loc, key.value)))
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, (*loc, i)) for i, item in enumerate(node.value)]
    return sorted(out, key=lambda p: p.path)


def _parse_yaml(path: Path, text: str) -> Any:
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        twice = _yaml_twice(path, node)
        if twice:
            raise ConfigError(twice)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise _problem(path, f"invalid YAML{where}: {getattr(e, 'problem', e)}") from None
    finally:
        loader.dispose()


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
    said = _shown(value) in msg or str(value) in msg
    if kind not in ("model_type", "dict_type") and not isinstance(value, dict | list) and not said:
        msg += f" (got {_shown(value)})"
    return msg


@dataclass
class _Where:
    """Where a pydantic error is, in the user's terms: the location without pydantic's own labels (union members,
    validator names), the union it went through (its location and annotation) and the rule of the value there."""

    loc: Loc
    union: tuple[Loc, Any] | None = None
    rule: str | None = None
    key: bool = False


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> _Where:
    """Follow an error's location through the models' annotations, dropping what only pydantic knows."""
    cur: Any = model
    meta: list[Any] = []
    clean: list[str | int] = []
    union: tuple[Loc, Any] | None = None
    key_ann: Any = None
    is_key = False
    for part in loc:
        if part == "[key]":
            is_key, cur, meta = True, key_ann, []
            continue
        cur, extra = _strip(cur)
        meta = [*meta, *extra]
        if R.is_union(cur) and len(R.members(cur)) > 1 and isinstance(part, str):
            if union is None:
                union = (tuple(clean), cur)
            cur = next((m for m in R.members(cur) if getattr(_strip(m)[0], "__name__", None) == part), None)
            meta = []
            continue
        if isinstance(part, str) and part.startswith(("function-", "constrained-")):
            continue
        clean.append(part)
        if isinstance(cur, type) and issubclass(cur, BaseModel):
            fld = cur.model_fields.get(str(part)) or next(
                (f for f in cur.model_fields.values() if f.alias == part), None)
            cur, meta = (fld.annotation, list(fld.metadata)) if fld is not None else (None, [])
        elif get_origin(cur) is dict:
            key_ann, cur = get_args(cur)
            meta = []
        elif get_origin(cur) is list:
            cur, meta = get_args(cur)[0], []
        else:
            cur, meta = None, []
    if cur is not None:
        cur, extra = _strip(cur)
        meta = [*meta, *extra]
    rule = R.rule_of(cur, meta) if cur is not None else None
    return _Where(tuple(clean), union, rule, is_key)


def _strip(annotation: Any) -> tuple[Any, list[Any]]:
    """(the type inside Annotated[...] and Optional[...], the Annotated metadata)."""
    meta: list[Any] = []
    while True:
        if get_origin(annotation) is Annotated:
            args = get_args(annotation)
            annotation, meta = args[0], [*meta, *args[1:]]
        elif R.is_union(annotation) and len(R.members(annotation)) == 1:
            annotation = R.members(annotation)[0]
        else:
            return annotation, meta


def _shown(value: Any) -> str:
    got = json.dumps(value, default=str, ensure_ascii=False)
    return got if len(got) <= 80 else got[:60] + "…"


_OWN = ("value_error", "missing", "extra_forbidden")  # Phoenix's own messages, and the loader's own wording


def _said(model: type[BaseModel], err: ErrorDetails, where: _Where) -> str:
    """The message of one error: the rule of the value where one is known, else the loader's wording."""
    kind, value = err["type"], err.get("input")
    if kind not in _OWN and not isinstance(value, dict | list):
        rule = where.rule
        if rule is None and kind == "string_pattern_mismatch":
            rule = R.PATTERNS.get(str((err.get("ctx") or {}).get("pattern", "")))
        if rule is not None:
            return f"{'key ' if where.key else ''}{_shown(value)} is not {rule}"
    return _message(model, err, where.loc)


def problems_of(error: ValidationError, model: type[BaseModel], file: str) -> list[Problem]:
    """One Problem per mistake, with the JSON path and what the value must be; the errors of a union's members
    about one value are one Problem (the value is not any of the shapes the field takes)."""
    out: list[Problem] = []
    unions: dict[Loc, list[tuple[ErrorDetails, _Where]]] = {}
    order: list[Loc | Problem] = []
    for err in error.errors(include_url=False):
        where = _walk(model, tuple(err["loc"]))
        if where.union is None:
            order.append(Problem(file, json_path(where.loc), _said(model, err, where)))
            continue
        at = where.union[0]
        if at not in unions:
            unions[at] = []
            order.append(at)
        unions[at].append((err, where))
    for item in order:
        if isinstance(item, Problem):
            out.append(item)
            continue
        group = unions[item]
        flat = [(e, w) for e, w in group if w.loc == item]
        deeper = [(e, w) for e, w in group if w.loc != item]
        own = [(e, w) for e, w in flat if e["type"] == "value_error"]
        if deeper and not flat:  # an object was given: the member it is meant as says what is wrong in it
            out += [Problem(file, json_path(w.loc), _said(model, e, w)) for e, w in deeper]
        elif own:  # a Phoenix check of one member said exactly what is wrong
            out.append(Problem(file, json_path(item), _message(model, own[0][0], item)))
        else:
            union = group[0][1].union
            assert union is not None
            value = flat[0][0].get("input") if flat else None
            out.append(Problem(file, json_path(item), f"{_shown(value)} is not {R.union_rule(union[1])}"))
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
