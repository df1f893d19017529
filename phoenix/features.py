"""The feature and app script library under images/, and what each script declares it needs.

A script declares its needs in header comments, so a new feature needs no Python change::

    # @phoenix summary: Docker Engine (and the NVIDIA Container Toolkit with GPUs)
    # @phoenix requires: nesting          (pct_features.nesting on the guest)
    # @phoenix requires: keyctl           (pct_features.keyctl on an unprivileged guest: Docker needs it)
    # @phoenix requires: gpu              (a non-empty gpu_assignment)
    # @phoenix requires-feature: nvidia   (the feature runs on this guest or an ancestor first)
    # @phoenix secret: hf_token           (delivered as /etc/phoenix/secrets/hf_token, mode 0600)
    # @phoenix secret: docker_token optional
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from .secrets import SECRET_NAMES

DIRECTIVE = re.compile(r"^#\s*@phoenix\s+([a-z-]+)\s*:\s*(.+?)\s*$")
REQUIREMENTS = ("nesting", "keyctl", "gpu")
LIB = Path("lib/phoenix-common.sh")


@dataclass(frozen=True)
class Script:
    """A feature or app script and its declarations."""

    name: str
    path: Path
    sha256: str
    summary: str = ""
    requires: tuple[str, ...] = ()
    requires_features: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    optional_secrets: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default=(), compare=False)


def parse_script(name: str, path: Path) -> Script:
    """Read a script's header declarations (pure apart from reading the file)."""
    data = path.read_bytes()
    summary = ""
    requires: list[str] = []
    after: list[str] = []
    secrets: list[str] = []
    optional: list[str] = []
    problems: list[str] = []
    for line in data.decode("utf-8", "replace").splitlines()[:60]:
        m = DIRECTIVE.match(line)
        if not m:
            continue
        key, value = m.groups()
        if key == "summary":
            summary = value
        elif key == "requires":
            (requires if value in REQUIREMENTS else problems).append(value)
        elif key == "requires-feature":
            after.append(value)
        elif key == "secret":
            secret, _, flag = value.partition(" ")
            if secret not in SECRET_NAMES:
                problems.append(f"unknown secret {secret!r}")
            (optional if flag.strip() == "optional" else secrets).append(secret)
        else:
            problems.append(f"unknown directive {key!r}")
    return Script(name, path, hashlib.sha256(data).hexdigest(), summary, tuple(requires), tuple(after),
                  tuple(secrets), tuple(optional), tuple(problems))


class Library:
    """The scripts under an images/ directory, each read once per Library (one per run)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._scripts: dict[tuple[str, str], Script] = {}
        self._exists: dict[Path, bool] = {}
        self._sha256: dict[Path, str] = {}

    def exists(self, path: Path) -> bool:
        if path not in self._exists:
            self._exists[path] = path.exists()
        return self._exists[path]

    def _script(self, kind: str, name: str, path: Path) -> Script:
        key = (kind, name)
        if key not in self._scripts:
            self._scripts[key] = parse_script(name, path)
        return self._scripts[key]

    def feature_path(self, name: str) -> Path:
        return self.root / "features" / f"{name}.sh"

    def app_path(self, name: str) -> Path:
        return self.root / "apps" / name

    @property
    def lib_path(self) -> Path:
        return self.root / LIB

    def feature(self, name: str) -> Script:
        return self._script("feature", name, self.feature_path(name))

    def app(self, name: str) -> Script:
        return self._script("app", name, self.app_path(name))

    def lib_sha256(self) -> str:
        path = self.lib_path
        if not self.exists(path):
            return ""
        return self._script("lib", LIB.name, path).sha256

    def file_sha256(self, path: Path) -> str:
        """The sha256 of a data file scripts read (a lock under locks/), "" when it is missing; read once."""
        if path not in self._sha256:
            try:
                self._sha256[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                self._sha256[path] = ""
        return self._sha256[path]

    def known_features(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "features").glob("*.sh"))

    def known_apps(self) -> list[str]:
        return sorted(p.name for p in (self.root / "apps").glob("*") if p.is_file())

    def missing_feature(self, name: str) -> str:
        """What to say of a feature whose script is not there: the path looked for, where features live, the
        closest names."""
        known = self.known_features()
        return (f"unknown feature {name!r}: there is no {self.feature_path(name)}; feature scripts live in "
                f"{self.root / 'features'}/ as <name>.sh (known: {', '.join(known) or 'none'}){_close(name, known)}")

    def missing_app(self, name: str) -> str:
        """What to say of an application script that is not there: the path, where app scripts live, what is there."""
        known = self.known_apps()
        return (f"{self.app_path(name)} does not exist: application scripts live in {self.root / 'apps'}/ and are "
                f"named by their file name (there: {', '.join(known) or 'none'}){_close(name, known)}")


def _close(name: str, known: list[str]) -> str:
    import difflib

    found = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {found[0]!r}?" if found else ""


