"""`phoenix_stacks_config.json`: Docker Compose stacks (seed 002's shape), deployed per environment through Portainer.

A stack names its compose file by its path in the project, under `stacks/` (`stacks/qdrant/docker-compose.yml`);
each environment gives the stack's variables
(inline, or from a 0600 file: `value_file`, which the README recommends for secrets) and files to place in its
containers. Guests choose stacks with `docker_stacks` (a name, or `{name, environment}`).
"""

from __future__ import annotations

import contextlib
import posixpath
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ..errors import Problem
from .rules import CONTAINER_FILE
from .strict import Strict

STACKS_DIR = "stacks"
VARIABLE = r"^[A-Za-z_][A-Za-z0-9_]*$"
LOOKS_SECRET = re.compile(r"(PASS|SECRET|TOKEN|KEY|CREDENTIAL)", re.I)


def normalise(name: str) -> str:
    """Portainer's stack name: lower case, characters outside [-_a-z0-9] dropped."""
    return re.sub(r"[^-_a-z0-9]", "", name.lower())


class Variable(Strict):
    name: str = Field(..., pattern=VARIABLE)
    value: str | None = None
    value_file: str | None = Field(None, description="a 0600 file holding the value (for secrets), relative to the config dir")

    @model_validator(mode="after")
    def _one(self) -> Variable:
        if (self.value is None) == (self.value_file is None):
            raise ValueError("give value or value_file (a 0600 file, for secrets), not both")
        return self


class StackFile(Strict):
    """A file of the project placed in the stack's containers (an inline Compose `config` mounted at the destination)."""

    source: str = Field(..., description="the file's path in the project, under stacks/")
    destination_in_container: str = Field(..., pattern=CONTAINER_FILE)

    @field_validator("destination_in_container")
    @classmethod
    def _plain(cls, v: str) -> str:
        """Sent as written to Portainer, so refused rather than guessed: no '..', no control characters."""
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError(f"{v!r} has control characters: a destination is a plain absolute path, e.g. /app/.env")
        if ".." in v.split("/"):
            raise ValueError(f"{v!r} climbs with '..' (it would be {posixpath.normpath(v)}): write the path it means, "
                             "e.g. /app/.env")
        return v


class Environment(Strict):
    variables: list[Variable] = Field(default_factory=list)
    files: list[StackFile] = Field(default_factory=list)


class Stack(Strict):
    description: str = ""
    compose_file_path: str = Field(..., description="the compose file's path in the project, under stacks/")
    environments: dict[str, Environment] = Field(..., min_length=1)


class StacksConfig(Strict):
    schema_ref: str | None = Field(None, alias="$schema")
    docker_stacks: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")], Stack] = Field(default_factory=dict)


def _choice(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class StackChoice(Strict):
    """A stack a guest runs: its name, and which of its environments (the only one if it has one)."""

    name: str
    environment: str | None = None


StackChoices = list[Annotated[StackChoice, BeforeValidator(_choice, json_schema_input_type=str | StackChoice)]]


def under(project: Path, relative: str) -> Path | None:
    """project/relative, normalised, if it lies under the project's stacks/ (no absolute path, no way out with ..,
    no control characters), and so does the file it really is (links followed: the resolved paths are compared)."""
    if relative.startswith("/") or any(ord(c) < 32 or ord(c) == 127 for c in relative):
        return None
    path = posixpath.normpath(relative)
    if not path.startswith(f"{STACKS_DIR}/"):
        return None
    try:
        real, top = (project / path).resolve(), (project / STACKS_DIR).resolve()
    except (OSError, RuntimeError):  # a loop of links
        return None
    return project / path if real.is_relative_to(top) else None


def checks(stacks: StacksConfig, file: str, project: Path, config_dir: Path,
           choices: dict[int, tuple[str, str, StackChoices]], refused: frozenset[str] | None = frozenset()) -> list[Problem]:
    """Stacks against the project's files and the guests' choices: every problem at once.

    choices: guest id -> (its config file, its JSON path, the stacks it chose). refused: the names of the file's
    entries that were refused (already said: a guest choosing one is not told there is no such stack); None when the
    file itself could not be read (then no choice is checked against it)."""
    from .compose import compose_problems

    out: list[Problem] = []
    deployed = deployed_environments(stacks, choices)
    normal: dict[str, str] = {}
    for name in stacks.docker_stacks:
        if normalise(name) in normal:
            out.append(Problem(file, f'$.docker_stacks["{name}"]', f"{name!r} and {normal[normalise(name)]!r} are both "
                               f"{normalise(name)!r} to Portainer (lower case, [-_a-z0-9] only): rename one"))
        normal.setdefault(normalise(name), name)
    for name, stack in stacks.docker_stacks.items():
        at = f'$.docker_stacks["{name}"]'
        compose = under(project, stack.compose_file_path)
        if compose is None:
            out.append(Problem(file, f"{at}.compose_file_path",
                               f"{stack.compose_file_path!r} is not under the project's stacks/ directory (links followed: "
                               "the file it really is must lie there too): give a path "
                               "like stacks/NAME/docker-compose.yml"))
            continue
        if not compose.is_file():
            out.append(Problem(file, f"{at}.compose_file_path", f"{compose} does not exist"))
            continue
        for env_name, env in stack.environments.items():
            variables = {v.name for v in env.variables}
            if (name, env_name) in deployed:
                out += _value_files(env, config_dir, file, f'{at}.environments["{env_name}"]')
            for text in compose_problems(compose, variables):
                out.append(Problem(file, f"{at}.environments[\"{env_name}\"]", text))
            for i, f in enumerate(env.files):
                source = under(project, f.source)
                if source is None or not source.is_file():
                    why = (f"{f.source!r} is not under the project's stacks/ directory (links followed: the file "
                            "it really is must lie there too)" if source is None
                           else f"{source} does not exist")
                    out.append(Problem(file, f"{at}.environments[\"{env_name}\"].files[{i}].source", why))
    for _vmid, (gfile, gat, chosen) in sorted(choices.items()):
        seen: dict[str, str] = {}
        for i, choice in enumerate(chosen):
            at = f"{gat}.docker_stacks[{i}]"
            chosen_stack = stacks.docker_stacks.get(choice.name)
            if refused is None or (chosen_stack is None and choice.name in refused):
                continue  # the stack's own entry (or the file) is what is wrong, and it is said there
            if chosen_stack is None:
                known = ", ".join(sorted(stacks.docker_stacks)) or "none"
                out.append(Problem(gfile, at, f"no stack {choice.name!r} in {file or 'phoenix_stacks_config.json'} "
                                              f"(stacks: {known})"))
                continue
            if choice.environment is None and len(chosen_stack.environments) > 1:
                out.append(Problem(gfile, at, f"stack {choice.name!r} has environments "
                                              f"{', '.join(chosen_stack.environments)}: "
                                              'say which, {"name": ..., "environment": ...}'))
            elif choice.environment is not None and choice.environment not in chosen_stack.environments:
                out.append(Problem(gfile, f"{at}.environment", f"stack {choice.name!r} has no environment "
                                   f"{choice.environment!r} (it has: {', '.join(chosen_stack.environments)})"))
            if choice.name in seen:
                out.append(Problem(gfile, at, f"stack {choice.name!r} is listed twice: a guest runs a stack once"))
            seen[choice.name] = choice.name
    return out


def readable_entries(path: Path) -> tuple[StacksConfig, frozenset[str] | None]:
    """After the file was refused: its entries that are valid each on its own, and the names of those that are not
    (None: the file itself cannot be read as a stacks file). The refusal lists every problem; this keeps one bad
    entry from making every guest's choice of the others look like a missing stack."""
    from pydantic import ValidationError

    from ..errors import ConfigError
    from .load import read

    try:
        data = read(path)
    except ConfigError:
        return StacksConfig(), None
    entries = data.get("docker_stacks") if isinstance(data, dict) else None
    if not isinstance(entries, dict):
        return StacksConfig(), None
    good: dict[str, Stack] = {}
    for name, entry in entries.items():
        with contextlib.suppress(ValidationError):
            good[str(name)] = Stack.model_validate(entry)
    return StacksConfig.model_construct(docker_stacks=good), frozenset(str(n) for n in entries if n not in good)


def _value_files(env: Environment, config_dir: Path, file: str, at: str) -> list[Problem]:
    """Each value_file of a deployed environment is a 0600 file (its value is read to make the stack's identity)."""
    from ..errors import PhoenixError
    from ..secrets import check_private_file
    from .files import resolve
    from .rules import inside, relative_problem

    out = []
    for i, v in enumerate(env.variables):
        if v.value_file is not None:
            said = relative_problem(v.value_file, f"the config dir {config_dir}")
            if said is None and not inside(config_dir / v.value_file, config_dir):
                said = (f"{v.value_file!r} leads to {(config_dir / v.value_file).resolve()}, outside the config dir "
                        f"{config_dir}: a value file is a file inside it")
            if said is not None:
                out.append(Problem(file, f"{at}.variables[{i}].value_file", said))
                continue
            try:
                check_private_file(resolve(config_dir, v.value_file), f"value_file of {v.name}")
            except PhoenixError as e:
                out.append(Problem(file, f"{at}.variables[{i}].value_file", str(e)))
    return out


def deployed_environments(stacks: StacksConfig, choices: dict[int, tuple[str, str, StackChoices]]) -> set[tuple[str, str]]:
    """(stack, environment) of every choice of a guest."""
    return {(c.name, environment_of(stacks.docker_stacks[c.name], c)) for _, _, chosen in choices.values()
            for c in chosen if c.name in stacks.docker_stacks}


def notes(stacks: StacksConfig, file: str, deployed: set[tuple[str, str]]) -> list[Problem]:
    """What is accepted but worth saying once: secrets written inline, in the environments guests deploy."""
    out = []
    for name, stack in stacks.docker_stacks.items():
        for env_name, env in stack.environments.items():
            if (name, env_name) not in deployed:
                continue
            for i, v in enumerate(env.variables):
                if v.value is not None and LOOKS_SECRET.search(v.name):
                    out.append(Problem(file, f'$.docker_stacks["{name}"].environments["{env_name}"].variables[{i}]',
                                       f"{v.name} looks like a secret written inline: put it in a 0600 file and give "
                                       "value_file instead"))
    return out


def environment_of(stack: Stack, choice: StackChoice) -> str:
    """The environment a guest's choice means (its only one when none is named)."""
    return choice.environment or next(iter(stack.environments))
