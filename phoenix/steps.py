"""A build as data: the steps of a bake or an update, which the builder executes and `doit plan --steps` prints.

Each kind turns a decision into steps (pure); nothing here makes a call. A step says what it is for (`what`,
the line the run prints), the exact call it makes, and what the run's view of the host becomes once it is
done (`then`). Secrets appear only by name: their values are read when a script runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SetFacts:
    """The guest now has these tags (and these listing values), as the host will list it."""

    vmid: int
    tags: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    new: bool = False      # a guest that did not exist: start from nothing but its id
    keep_tags: bool = False  # the tags stay as they are (a move changes only the node)


@dataclass(frozen=True)
class Forget:
    """The guest is gone."""

    vmid: int


@dataclass(frozen=True)
class HostRecorded:
    """A host part is recorded in the node's notes with this identity."""

    key: str
    identity: str
    inputs: Mapping[str, str]
    node: str = ""


Effect = SetFacts | Forget | HostRecorded


@dataclass(frozen=True)
class Call:
    """One Proxmox API call; a call that starts a task is waited for (its log shown if it fails)."""

    what: str
    method: str
    path: str                          # under /api2/json
    params: Mapping[str, Any] = field(default_factory=dict)
    idempotent: bool = False           # may be sent again on a network or lock error
    retry_locked: bool = False         # may be sent again when Proxmox refused it for a lock (nothing happened)
    timeout: float | None = None       # for the task; None: the endpoint's task timeout
    clone: bool = False                # clones the resource's parent: wait for the parent's clone turn
    records: bool = False              # records the build: after it, the resource is built
    then: Effect | None = None


def download(node: str, source: Any, content: str) -> Call:
    """The download of an OS template (content vztmpl) or a cloud image (import) into its storage: `source` has a
    volume `storage:content/file`, a url and an optional checksum with its algorithm (config.hypervisor)."""
    storage, _, rest = str(source.volume).partition(":")
    kind, _, filename = rest.partition("/")
    assert kind == content and filename, source.volume  # the config's volume patterns guarantee this shape
    args: dict[str, Any] = {"url": source.url, "filename": filename, "content": content}
    if source.checksum:
        args.update({"checksum": source.checksum, "checksum-algorithm": source.checksum_algorithm})
    return Call(f"download {filename} into {storage}", "POST", f"nodes/{node}/storage/{storage}/download-url", args)


@dataclass(frozen=True)
class NodeSet:
    """Settings only root@pam may make, through the node (`pct set`)."""

    what: str
    vmid: int
    options: Mapping[str, str]


@dataclass(frozen=True)
class MakeDirs:
    """Create bind-mounted host directories the config says to create (given to the container's mapped root)."""

    what: str
    paths: tuple[str, ...]
    owner: int | None = None
    give: tuple[str, ...] = ()   # existing empty directories owned outside the container's id map: given to owner


@dataclass(frozen=True)
class NodeScript:
    """A script run on the node itself, as root (host set-up), with its context (no secret values)."""

    what: str
    layer: str                         # the resource's key: prefixes every output line
    name: str
    path: Path
    lib: Path
    context: Mapping[str, Any]
    timeout: float = 3600.0


@dataclass(frozen=True)
class SaveToken:
    """Make an API token and write its secret, which Proxmox shows once, to a 0600 file (never to the output)."""

    what: str
    userid: str
    tokenid: str
    file: Path
    replace: bool = False              # the token exists but its secret is lost: remove it first


@dataclass(frozen=True)
class NoteHost:
    """Record a host part as built: its identity and inputs in the node's notes (read, changed, written with the
    digest read, so parts recorded at once never overwrite each other)."""

    what: str
    node: str
    key: str
    identity: str
    inputs: Mapping[str, str]


@dataclass(frozen=True)
class Script:
    """A feature or app script run inside the guest, with its context and the secrets it declares."""

    what: str
    vmid: int
    layer: str                         # the resource's key: prefixes every output line
    name: str                          # file name in the guest
    path: Path
    lib: Path
    context: Mapping[str, Any]
    secrets: tuple[str, ...] = ()      # names: required ones first
    required: tuple[str, ...] = ()
    timeout: float = 3600.0
    files: tuple[tuple[str, Path], ...] = ()  # data files it reads: (name in the guest's /opt/phoenix/files, local path)


@dataclass(frozen=True)
class RemoveSecrets:
    """Remove every secret file from the guest (before a template layer is snapshotted: clones inherit it)."""

    what: str
    vmid: int


@dataclass(frozen=True)
class RestartIfPending:
    """Restart a running guest if Proxmox holds settings until the next start (or root-only ones changed)."""

    what: str
    path: str                          # the guest's API path
    changed_root: tuple[str, ...] = ()


@dataclass(frozen=True)
class PortainerToken:
    """Make Phoenix's API token on the Portainer server: the admin first if it has none (with the admin password),
    then log in and create the key, whose value goes straight into its 0600 file."""

    what: str
    url: str
    admin_user: str
    token_file: str


@dataclass(frozen=True)
class PortainerEnv:
    """Find the guest's Portainer environment (by its URL), or register it: the server's own Docker (local) or the
    agent at `url`. Then the run knows its id, identity and build."""

    what: str
    guest: int
    name: str
    url: str                           # tcp://ip:9001 for an agent; "" for the server's local Docker
    identity: str
    build_id: str


@dataclass(frozen=True)
class PortainerCheck:
    """Before an environment is registered again (its agent script rerun first): Portainer answers with Phoenix's token,
    and the environment at the URL is absent or Phoenix's; else the run stops here, the guest untouched."""

    what: str
    guest: int
    name: str
    url: str


@dataclass(frozen=True)
class DeployStack:
    """Create the stack on the guest's environment, or update Phoenix's stack of that name; refuse one that is not
    Phoenix's. Variables are (name, inline value or None, value file or None): values are read when it runs."""

    what: str
    guest: int
    name: str                          # as Portainer keeps it (normalised)
    compose: str                       # the text sent (files mounted as inline configs)
    variables: tuple[tuple[str, str | None, str | None], ...]
    identity: str
    build_id: str
    parent_build: str | None
    inputs: Mapping[str, str]
    pull: bool = False


@dataclass(frozen=True)
class PutSnippets:
    """Write cloud-init snippets into a storage's snippets directory on the node (Proxmox has no API upload for
    them): each under a temporary name, then renamed, named by content so a VM never reads a half-written file."""

    what: str
    storage: str
    directory: str                     # the storage's snippets directory on the node (<path>/snippets)
    files: Mapping[str, bytes]         # file name -> content (user-data may hold a secret: never printed)
    prefix: str = ""                   # other files with this prefix are this guest's old snippets: removed
    keep_vmids: tuple[int, ...] = ()   # phoenix-<vmid>-*.yml of any other VMID is no VM's any more: removed


@dataclass(frozen=True)
class AgentWait:
    """Wait until the VM's guest agent answers (agent/ping), on the host's clock."""

    what: str
    node: str
    vmid: int
    timeout: float = 600.0


@dataclass(frozen=True)
class AgentRun:
    """Run a command in a VM through the guest agent: the files first (agent/file-write), then agent/exec with an
    argv list, polled with exec-status until it exits. warn_exit: exit codes that are a warning, not a failure."""

    what: str
    node: str
    vmid: int
    layer: str
    argv: tuple[str, ...]
    files: tuple[tuple[str, int, bytes], ...] = ()   # (path in the guest, mode, content)
    timeout: float = 3600.0
    warn_exit: tuple[int, ...] = ()
    show_on_failure: str | None = None               # a guest file whose tail a failure shows
    secrets: tuple[str, ...] = ()                    # names: their values are read when it runs, written 0600
    required: tuple[str, ...] = ()
    secrets_dir: str = ""                            # where they go in the guest


@dataclass(frozen=True)
class RemoveStack:
    """Remove a stack Phoenix deployed that no guest lists any more (only with PHOENIX_PRUNE_STACKS)."""

    what: str
    stack_id: int
    endpoint: int


@dataclass(frozen=True)
class SendFile:
    """Copy a local file (an archive from the artifact store) to the node, streamed; its sha256 checked as it is sent."""

    what: str
    source: Path
    path: str                          # absolute, on the node
    sha256: str


@dataclass(frozen=True)
class RemoveNodeFile:
    """Remove a file Phoenix put on the node (an archive once restored)."""

    what: str
    path: str


@dataclass(frozen=True)
class Gone:
    """A guest a copy replaces (its old copy, and the linked clones of that copy, deepest first)."""

    vmid: int
    node: str
    running: bool = False
    protection: bool = False


@dataclass(frozen=True)
class CopyLayer:
    """Copy a built layer to another member of the cluster, under the copy's own VMID and the layer's record: vzdump
    on its member, the archive moved over the members' shell operations unless the backup storage is shared, restored
    there (as a template when the layer is one), its snapshot made again, then the record. What it replaces goes
    first; the archives are removed from both members."""

    what: str
    kind: str                          # "lxc" or "qemu"
    vmid: int                          # the layer
    source: str                        # its member
    node: str                          # the member the copy goes to
    copy_vmid: int
    backup_storage: str
    dump_dir: str                      # that storage's directory on the members (<path>/dump)
    shared_backup: bool                # the backup storage is shared: the archive is on every member already
    restore: Mapping[str, Any]         # the restore's other parameters (storage, unique, tags and description while made)
    record: Mapping[str, Any]          # the config PUT that records the copy (tags, description)
    snapshot: str | None = None        # made again (vzdump keeps none)
    replace: tuple[Gone, ...] = ()
    running: bool = False              # the layer runs: dumped in snapshot mode


Step = (Call | NodeSet | MakeDirs | Script | RemoveSecrets | RestartIfPending | NodeScript | SaveToken | NoteHost
        | PortainerToken | PortainerCheck | PortainerEnv | DeployStack | RemoveStack | SendFile | RemoveNodeFile | PutSnippets
        | AgentWait | AgentRun | CopyLayer)


def _value(value: Any, limit: int = 60) -> str:
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def render(step: Step, node: str = "") -> str:
    """The exact call a step makes, as `doit plan --steps` prints it."""
    if isinstance(step, Call):
        params = " ".join(f"{k}={_value(v)}" for k, v in step.params.items())
        return f"{step.method} /{step.path}" + (f"  {params}" if params else "")
    if isinstance(step, NodeSet):
        return f"pct set {step.vmid} " + " ".join(f"--{k} {_value(v)}" for k, v in step.options.items())
    if isinstance(step, Script):
        secrets = f"; secrets {', '.join(step.secrets)}" if step.secrets else ""
        secrets += f"; files {', '.join(n for n, _ in step.files)}" if step.files else ""
        return f"run {step.name} in CT {step.vmid} (timeout {step.timeout:.0f}s{secrets})"
    if isinstance(step, MakeDirs):
        owner = f" (owned by {step.owner}:{step.owner})" if step.owner is not None else ""
        give = f"chown {step.owner}:{step.owner} {' '.join(step.give)} on the node (each checked empty first)"
        if not step.paths:
            return give
        return f"mkdir -p {' '.join(step.paths)} on the node{owner}" + (f"; {give}" if step.give else "")
    if isinstance(step, NodeScript):
        return f"run {step.name} on the node (timeout {step.timeout:.0f}s)"
    if isinstance(step, SaveToken):
        new = f"DELETE /access/users/{step.userid}/token/{step.tokenid}, then " if step.replace else ""
        return f"{new}POST /access/users/{step.userid}/token/{step.tokenid}  privsep=1; its secret to {step.file} (0600)"
    if isinstance(step, NoteHost):
        return f"PUT /nodes/{step.node}/config  description=<notes with {step.key} {step.identity}> digest=<as read>"
    if isinstance(step, SendFile):
        return f"copy {step.source} to {step.path} on the node (SFTP; sha256 {step.sha256[:12]}...)"
    if isinstance(step, RemoveNodeFile):
        return f"rm -f {step.path} on the node"
    if isinstance(step, RemoveSecrets):
        return f"remove /etc/phoenix/secrets/* in CT {step.vmid}"
    if isinstance(step, PutSnippets):
        return (f"write {', '.join(sorted(step.files))} into {step.directory} (storage {step.storage}) on the node "
                f"(SFTP; other {step.prefix}* removed" + (", and snippets of VMIDs neither on the host nor in the config"
                                                           if step.keep_vmids else "") + ")")
    if isinstance(step, CopyLayer):
        gone = f"destroy {', '.join(f'{g.vmid}@{g.node}' for g in step.replace)}; " if step.replace else ""
        move = "" if step.shared_backup else f", copied from {step.source} to {step.node} (SFTP)"
        return (f"{gone}POST /nodes/{step.source}/vzdump vmid={step.vmid} storage={step.backup_storage}{move}; "
                f"POST /nodes/{step.node}/{'lxc' if step.kind == 'lxc' else 'qemu'} vmid={step.copy_vmid} (restore)"
                + (f"; snapshot {step.snapshot}" if step.snapshot else "") + "; record")
    if isinstance(step, AgentWait):
        return f"POST /nodes/{step.node}/qemu/{step.vmid}/agent/ping until it answers (timeout {step.timeout:.0f}s)"
    if isinstance(step, AgentRun):
        files = f"agent/file-write {', '.join(f[0] for f in step.files)}; " if step.files else ""
        secrets = f"; secrets {', '.join(step.secrets)} (0600 in {step.secrets_dir})" if step.secrets else ""
        return f"{files}agent/exec {list(step.argv)} in VM {step.vmid} (timeout {step.timeout:.0f}s{secrets})"
    if isinstance(step, PortainerToken):
        return (f"{step.url}: POST /api/users/admin/init if it has no admin, POST /api/auth as {step.admin_user}, "
                f"POST /api/users/<id>/tokens; the key to {step.token_file} (0600)")
    if isinstance(step, PortainerCheck):
        return f"GET /api/users/me (the token works); GET /api/endpoints, GET /api/tags: {step.url} is Phoenix's or free"
    if isinstance(step, PortainerEnv):
        how = f"POST /api/endpoints  Name={step.name} EndpointCreationType=2 URL={step.url}" if step.url else \
            "the local environment (unix:///var/run/docker.sock)"
        return f"GET /api/endpoints; if not there: {how}"
    if isinstance(step, RemoveStack):
        return f"DELETE /api/stacks/{step.stack_id}?endpointId={step.endpoint}"
    if isinstance(step, DeployStack):
        names = ", ".join(n for n, _, _ in step.variables) or "none"
        return (f"POST /api/stacks/create/standalone/string?endpointId=<env of {step.guest}>  Name={step.name} "
                f"(or PUT /api/stacks/<id> if Phoenix's is there{', PullImage' if step.pull else ''}); "
                f"variables {names}; compose {len(step.compose)} bytes")
    return f"GET /{step.path}/pending, then POST /{step.path}/status/reboot if anything is pending"
