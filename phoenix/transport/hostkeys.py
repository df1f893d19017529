"""SSH host-key policy: never trust an unknown or changed key; say how to verify and trust it.

A server's key is accepted when it matches the pinned SHA256 fingerprint (ssh.host_key_fingerprint), or
else the known_hosts entry for the host. Everything but reading known_hosts is pure.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import paramiko
from paramiko.hostkeys import InvalidHostKey

from ..errors import PhoenixError


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256:… as `ssh-keygen -lf` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The name known_hosts files the host under: `host`, or `[host]:port` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


def short_type(key_type: str) -> str:
    """ed25519 for ssh-ed25519, as ssh-keyscan -t and /etc/ssh/ssh_host_<type>_key name it."""
    if "ed25519" in key_type:
        return "ed25519"
    if key_type.startswith("ecdsa"):
        return "ecdsa"
    if "rsa" in key_type:
        return "rsa"
    return key_type


def read_known_hosts(known_hosts: str, host: str, port: int, *, strict: bool = True) -> dict[str, paramiko.PKey]:
    """The keys known_hosts has for host:port, by key type ({} when the file is missing).

    An unreadable file is a PhoenixError when strict, else taken as empty."""
    path = Path(known_hosts).expanduser()
    keys = paramiko.HostKeys()
    if path.is_file():
        try:
            keys.load(str(path))
        except (OSError, paramiko.SSHException, InvalidHostKey) as e:
            if not strict:
                return {}
            why = f"damaged entry {e.line!r} ({e.exc}); fix or remove that line" if isinstance(e, InvalidHostKey) else str(e)
            raise PhoenixError(f"cannot read known_hosts file {path}: {why}") from None
    return dict(keys.lookup(known_hosts_name(host, port)) or {})


def check_host_key(key: paramiko.PKey, host: str, port: int, known_hosts: str, pinned: str | None, node: str = "") -> None:
    """Accept the server's key if it matches the pinned fingerprint, or else a known_hosts entry; else PhoenixError."""
    entries = {} if pinned else read_known_hosts(known_hosts, host, port)
    judge_host_key(key, host, port, Path(known_hosts).expanduser(), entries, pinned, node)


def judge_host_key(key: paramiko.PKey, host: str, port: int, path: Path, entries: Mapping[str, paramiko.PKey],
                   pinned: str | None, node: str = "") -> None:
    """check_host_key on known_hosts entries already read (pure): None when trusted, else PhoenixError."""
    fp, ktype = fingerprint(key), key.get_name()
    where = f"node {node} ({host}:{port})" if node else f"{host}:{port}"
    check_on_node = f"    ssh-keygen -lf /etc/ssh/ssh_host_{short_type(ktype)}_key.pub"
    if pinned:
        if fp == pinned.rstrip("="):
            return
        raise PhoenixError(
            f"SSH host key of {where} does not match ssh.host_key_fingerprint:\n"
            f"    pinned:    {pinned}\n    presented: {ktype} {fp}\n"
            "This is either a reinstalled node (new host key) or someone in the middle. Nothing was run.\n"
            f"Check the key on the node's console:\n{check_on_node}\n"
            f'and if it prints {fp}, set "host_key_fingerprint": "{fp}" in the hypervisor config.'
        )
    known = entries.get(ktype)
    if known is not None and known == key:
        return
    name = known_hosts_name(host, port)
    trust = (
        f"Check the key on the node's console:\n{check_on_node}\n"
        f"and if it prints {fp}, trust it either by adding it to {path}:\n"
        f"    ssh-keyscan -p {port} -t {short_type(ktype)} {host} >> {path}    "
        "(then `ssh-keygen -lf` that line: it must show the same fingerprint)\n"
        f'or by pinning it in the hypervisor config: "ssh": {{"host_key_fingerprint": "{fp}"}}'
    )
    if entries:
        old = ", ".join(f"{t} {fingerprint(k)}" for t, k in entries.items())
        raise PhoenixError(
            f"SSH host key of {where} has CHANGED: {path} has {old} for {name}, the server presented {ktype} {fp}.\n"
            "This is either a reinstalled node or someone in the middle. Nothing was run.\n"
            f"If the node was reinstalled, remove the old entry:\n    ssh-keygen -R {shlex.quote(name)} -f {path}\n" + trust
        )
    raise PhoenixError(
        f"SSH host key of {where} is unknown: the server presented {ktype} {fp}, and {path} has no entry for {name}.\n"
        "Phoenix never trusts an unknown host key automatically. Nothing was run.\n" + trust
    )


def preferred_key_types(available: Sequence[str], known: Iterable[str]) -> list[str]:
    """Host key algorithms with those known_hosts has for this host first (ssh-rsa also means rsa-sha2-*)."""
    wanted: set[str] = set()
    for t in known:
        wanted |= {t, "rsa-sha2-512", "rsa-sha2-256"} if t == "ssh-rsa" else {t}
    return [t for t in available if t in wanted] + [t for t in available if t not in wanted]
