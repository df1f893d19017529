"""Secrets: their names, and the token files that hold them, read the way ssh reads private keys
(loose permissions refused), never logged.

A secret's value is returned to the caller and goes nowhere else: not into an exception message,
not into a log line. Messages name the file, its mode and the command that fixes the problem.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import SettingsError

# The secrets scripts may ask for (`# @phoenix secret: NAME`): each is the file `secrets.NAME_file` of the
# hypervisor config, delivered into guests as /etc/phoenix/secrets/NAME. Defined here, once.
SECRET_NAMES = ("hf_token", "docker_token", "portainer_password", "vllm_api_key")
PLACEHOLDER_PREFIX = "phoenix-simulated-placeholder"


def check_private_file(path: str | os.PathLike[str], what: str = "secret file", missing_hint: str | None = None) -> Path:
    """The file exists, is a regular file and only its owner may read it; else PhoenixError with the fix."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        hint = missing_hint or (
            "Create it readable only by you and put the value in it, e.g.\n"
            f"    install -m 600 /dev/null {p} && \"${{EDITOR:-vi}}\" {p}\n"
            "(do not echo the value on a command line: it would land in your shell history)"
        )
        raise SettingsError(f"{what} {p} does not exist. {hint}") from None
    except OSError as e:
        raise SettingsError(f"cannot read {what} {p}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise SettingsError(f"{what} {p} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        raise SettingsError(
            f"{what} {p} has mode {mode:04o}: group or others may access it, so Phoenix refuses to use it "
            f"(like ssh does for private keys). Fix it with: chmod 600 {p}"
        )
    return p


def read_secret(path: str | os.PathLike[str]) -> str:
    """The value in a 0600 token file, without its trailing newline."""
    p = check_private_file(path)
    try:
        value = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"secret file {p} is not UTF-8 text") from None
    except OSError as e:
        raise SettingsError(f"cannot read secret file {p}: {e.strerror}") from None
    value = value.rstrip("\r\n")
    if not value:
        raise SettingsError(f"secret file {p} is empty: put the value in it (the file must stay mode 0600)")
    return value


def ensure_placeholder_secret(path: str | os.PathLike[str], name: str) -> Path:
    """For the simulated host: create `path` (mode 0600) holding a placeholder if it does not exist yet.

    An existing file is left alone. The file appears atomically with its final mode and content,
    whatever the umask, and a file created concurrently by someone else is never overwritten.
    """
    p = Path(path).expanduser()
    if p.exists():
        return p
    p.parent.mkdir(parents=True, exist_ok=True)
    # a new name for each caller (threads of one `doit -n 4` may ask at once), created O_EXCL and 0600
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits we want (e.g. 0o277); never more than 0600
        os.write(fd, f"{PLACEHOLDER_PREFIX}-{name}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, p)  # atomic, and fails instead of replacing a file that appeared meanwhile
    except FileExistsError:
        pass
    except OSError:  # no hard links on this file system: rename (not race-free, but still atomic)
        if not p.exists():
            os.replace(tmp, p)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return p


def write_secret(path: str | os.PathLike[str], value: str) -> Path:
    """Write a secret to a 0600 file, whole or not at all (a new file in the same directory, renamed over the old)."""
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (value + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, p)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return p
