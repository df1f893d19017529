"""docker.sh without a daemon: Docker's install instructions (deb822 source, /etc/apt/keyrings, conflicting packages),
the docker_source check, the smoke test against a stand-in `docker` (a real daemon runs it in test_feat_boot.py),
and registry logins that are never saved."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import make_context

SCRIPT = "features/docker.sh"
DOCKER_TOKEN = "dckr_pat_FAKE_token_123"

# A stand-in docker: `info` answers $FAKE_DRIVER, `import` keeps the tarball it is fed, `run` answers like runc
# 1.3.3 on an old lxc-pve when $FAKE_RUN_FAILS is set. Every call is recorded, with DOCKER_CONFIG.
STANDIN = r"""#!/bin/bash
printf 'docker %s [DOCKER_CONFIG=%s]\n' "$*" "${DOCKER_CONFIG:-}" >> "$FAKE_LOG"
case "$1" in
  info) echo "${FAKE_DRIVER:-overlay2}" ;;
  image) [ "$2" = inspect ] && { [ -f "$FAKE_DIR/imported.tar" ] || exit 1; }; [ "$2" = rm ] && rm -f "$FAKE_DIR/imported.tar"; exit 0 ;;
  import) cat > "$FAKE_DIR/imported.tar"; echo sha256:0123 ;;
  run) if [ -n "${FAKE_RUN_FAILS:-}" ]; then
         echo 'docker: Error response from daemon: failed to create task for container: runc create failed: open sysctl net.ipv4.ip_unprivileged_port_start file: reopen fd 8: permission denied' >&2; exit 126
       fi
       for last; do :; done; echo "$last" ;;
  login) cat > "$FAKE_DIR/login.stdin"; [ -d "$DOCKER_CONFIG" ] && echo '{"auths":{"x":{}}}' > "$DOCKER_CONFIG/config.json" ;;
  pull|logout) exit 0 ;;
esac
"""


@pytest.fixture
def docker(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(STANDIN)
    (bin_dir / "docker").chmod(0o755)
    (tmp_path / "log").touch()
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "log"), "FAKE_DIR": str(tmp_path)}


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "log").read_text().splitlines()


def test_an_unknown_docker_source_is_an_error(shell):
    r = shell.run(SCRIPT, "install_engine; echo went-on", context=make_context(docker={"source": "dockerhub"}), check=False)
    assert r.returncode == 1
    assert "unknown docker_source 'dockerhub': use distro" in r.stderr
    assert "went-on" not in r.stdout and "installing" not in r.stdout


@pytest.mark.parametrize(("os_id", "release", "suite"), [
    ("debian", 'ID=debian\nVERSION_CODENAME=bookworm\n', "bookworm"),
    ("ubuntu", 'ID=ubuntu\nVERSION_CODENAME=noble\nUBUNTU_CODENAME=noble\n', "noble"),
    ("ubuntu", 'ID=linuxmint\nVERSION_CODENAME=wilma\nUBUNTU_CODENAME="noble"\n', "noble"),
])
def test_docker_repository_as_deb822(shell, tmp_path, os_id, release, suite):
    (tmp_path / "os-release").write_text(release)
    r = shell.run(SCRIPT, f'docker_sources_file {os_id} "$(docker_suite {os_id})" amd64',
                  env={"OS_RELEASE": str(tmp_path / "os-release")})
    assert r.stdout == (f"Types: deb\nURIs: https://download.docker.com/linux/{os_id}\nSuites: {suite}\n"
                        "Components: stable\nArchitectures: amd64\nSigned-By: /etc/apt/keyrings/docker.asc\n")


def test_conflicting_packages_as_docker_lists_them(shell):
    r = shell.run(SCRIPT, "docker_conflicting_packages debian; echo --; docker_conflicting_packages ubuntu")
    debian, ubuntu = r.stdout.split("--\n")
    assert debian.split() == ["docker.io", "docker-doc", "docker-compose", "podman-docker", "containerd", "runc"]
    assert ubuntu.split() == [*debian.split(), "docker-compose-v2"]


def test_smoke_test_starts_a_container_from_a_local_image(shell, docker, tmp_path):
    r = shell.run(SCRIPT, "docker_smoke_test", env=docker)
    assert "smoke test: a container started and ran (storage driver overlay2)" in r.stdout
    log = [c.split(" [")[0] for c in calls(tmp_path)]
    assert log[:3] == ["docker info --format {{.Driver}}", "docker image inspect phoenix/docker-smoke:1",
                       "docker import - phoenix/docker-smoke:1"]
    assert log[3] == "docker run --rm --network none phoenix/docker-smoke:1 /bin/echo phoenix-docker-smoke-ok"
    assert log[4] == "docker image rm phoenix/docker-smoke:1"      # nothing left in the template
    assert not any(c.startswith(("docker pull", "docker login")) for c in log)


def test_the_smoke_image_really_runs(shell, tmp_path):
    """The tarball docker_smoke_test imports is a working root file system: its /bin/echo runs under chroot."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = tmp_path / "smoke"
    shell.run(SCRIPT, f'docker_smoke_rootfs "{root}"')
    out = subprocess.run(["/usr/sbin/chroot", str(root), "/bin/echo", "hello"], capture_output=True, text=True, env={})
    assert (out.returncode, out.stdout) == (0, "hello\n")
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 8 * 2**20


def test_smoke_test_refuses_vfs(shell, docker, tmp_path):
    r = shell.run(SCRIPT, "docker_smoke_test", env={**docker, "FAKE_DRIVER": "vfs"}, check=False)
    assert r.returncode == 1 and "vfs storage driver" in r.stderr
    assert not any(" run " in c for c in calls(tmp_path))


def test_smoke_test_failure_names_the_host_package(shell, docker, tmp_path):
    r = shell.run(SCRIPT, "docker_smoke_test", env={**docker, "FAKE_RUN_FAILS": "1"}, check=False)
    assert r.returncode == 1
    assert "ip_unprivileged_port_start" in r.stderr                     # docker's own message is shown
    assert "lxc-pve 6.0.5-2 or newer on the host" in r.stderr and "keyctl=1" in r.stderr
    assert calls(tmp_path)[-1].startswith("docker image rm phoenix/docker-smoke:1")


def test_saved_registry_logins_are_removed(shell, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": "c2VjcmV0"}}, "detachKeys": "ctrl-q"}))
    env = {"DOCKER_CLIENT_CONFIG": str(cfg)}
    first = shell.run(SCRIPT, "forget_registry_logins; phx_finish", env=env)
    assert "removed saved registry logins" in first.stdout
    assert json.loads(cfg.read_text()) == {"detachKeys": "ctrl-q"}
    assert oct(cfg.stat().st_mode & 0o777) == "0o600"
    second = shell.run(SCRIPT, "forget_registry_logins; phx_finish", env=env)
    assert second.stdout.strip() == "docker: nothing to change"


def test_a_pull_logs_in_for_that_pull_only(shell, docker, tmp_path):
    shell.secret("docker_token", f"phxuser:{DOCKER_TOKEN}")
    r = shell.run("apps/phoenix_hypervisor_lxc_910.sh", "phx_docker_pull portainer/portainer-ce:lts", env=docker)
    log = calls(tmp_path)
    assert [c.split(" [")[0] for c in log] == ["docker login --username phxuser --password-stdin",
                                               "docker pull -q portainer/portainer-ce:lts", "docker logout"]
    config_dir = log[0].split("DOCKER_CONFIG=")[1].rstrip("]")
    assert config_dir and all(f"DOCKER_CONFIG={config_dir}]" in c for c in log)
    assert not Path(config_dir).exists()                  # the login went with the script
    assert (tmp_path / "login.stdin").read_text() == DOCKER_TOKEN
    assert DOCKER_TOKEN not in "\n".join(log) + r.stdout + r.stderr


def test_a_bare_token_needs_a_user(shell, docker):
    shell.secret("docker_token", DOCKER_TOKEN)
    r = shell.run("apps/phoenix_hypervisor_lxc_910.sh", "phx_docker_pull x", env=docker, check=False)
    assert r.returncode == 1 and "has no user" in r.stderr and DOCKER_TOKEN not in r.stderr


def test_a_pull_without_a_token_does_not_log_in(shell, docker, tmp_path):
    shell.run("apps/phoenix_hypervisor_lxc_910.sh", "phx_docker_pull x", env=docker)
    assert [c.split(" [")[0] for c in calls(tmp_path)] == ["docker pull -q x"]


def test_the_token_is_checked_and_not_kept(shell, docker, tmp_path):
    shell.secret("docker_token", f"phxuser:{DOCKER_TOKEN}")
    r = shell.run(SCRIPT, "check_registry_login", env=docker)
    assert "docker_token logs in to Docker Hub (not saved)" in r.stdout
    log = calls(tmp_path)
    assert [c.split(" [")[0] for c in log] == ["docker login --username phxuser --password-stdin", "docker logout"]
    config_dir = log[0].split("DOCKER_CONFIG=")[1].rstrip("]")
    assert config_dir != "" and not Path(config_dir).exists()
    assert DOCKER_TOKEN not in "\n".join(log) + r.stdout + r.stderr
