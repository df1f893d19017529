"""Phoenix's ownership key for Portainer (standard library only): what marks an environment or a stack as Phoenix's
is signed with a key only Phoenix holds, so no one can set it by hand.

The key is derived from the Portainer admin password (secrets.portainer_password_file, 0600), which Phoenix already
needs to make its API token: PBKDF2-HMAC-SHA256 of the password with a fixed label as salt (20 000 rounds, about
4 ms once per run, so that a guess at the password from what Portainer shows costs as much, where a bare HMAC would
cost a microsecond; the password's own length is the real defence: Portainer asks for 12 characters or more). Every use has its
own label (environment, stack record, variable), so a value made for one never verifies as another:

- an agent environment's tag: `phoenix-env-<HMAC(key, "environment" NUL url)[:16 hex]>`;
- a stack record's signature: HMAC(key, "stack record" NUL payload), checked with hmac.compare_digest;
- a stack variable's value as the record (and .cache/) keep it: HMAC(key, "variable" NUL stack NUL name NUL value).

A changed admin password is a new key: what the old one signed no longer verifies, so it is refused, never changed.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os

LABEL = b"phoenix portainer ownership key v2"
ROUNDS = 20_000  # about 4 ms: paid by every run with stacks, the no-op too (BENCHMARKS.md, bench/stacks.py)
TAG_PREFIX = "phoenix-env-"


@functools.lru_cache(maxsize=4)
def derive(password: str) -> bytes:
    """The key of this admin password (kept in memory only)."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), LABEL, ROUNDS)


def key_of(password_file: str | os.PathLike[str] | None) -> bytes:
    """The key of the admin password in this 0600 file; SettingsError with the fix when there is none."""
    from ..errors import SettingsError
    from ..secrets import read_secret

    if password_file is None:
        raise SettingsError("Phoenix signs what it deploys to Portainer with a key made from the admin password: set "
                            "secrets.portainer_password_file in the hypervisor config")
    return derive(read_secret(password_file))


def mac(key: bytes, label: str, *parts: str) -> str:
    """HMAC-SHA256 (hex) of the label and the parts, NUL-separated."""
    return hmac.new(key, "\0".join((label, *parts)).encode(), hashlib.sha256).hexdigest()


def env_tag(key: bytes, url: str) -> str:
    """The tag Phoenix gives an agent environment it registers at this URL."""
    return TAG_PREFIX + mac(key, "environment", url)[:16]


def sign(key: bytes, payload: str) -> str:
    return mac(key, "stack record", payload)


def verifies(key: bytes, payload: str, signature: str) -> bool:
    return hmac.compare_digest(sign(key, payload), signature)


def secret_digest(key: bytes, stack: str, name: str, value: str) -> str:
    """A stack variable's value as its record keeps it: keyed, so no one without the key can test a guess."""
    return mac(key, "variable", stack, name, value)[:16]


def file_digest(key: bytes, path: str | os.PathLike[str]) -> str:
    """A secret file's content as .cache/model.json keeps it (to tell when it changed): keyed; "" when unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ""
    return hmac.new(key, b"file\0" + data, hashlib.sha256).hexdigest()
