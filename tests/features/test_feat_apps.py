"""App scripts: Portainer's docker arguments and vLLM's unit file, rendered without Docker, systemd or a GPU;
no secret value ever reaches a command line (every docker/systemctl/curl call is recorded and searched)."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from .conftest import make_context

P910 = "apps/phoenix_hypervisor_lxc_910.sh"
P950 = "apps/phoenix_hypervisor_lxc_950.sh"
PASSWORD = "S3cret-Portainer-Pa55!"
HF_TOKEN = "hf_FAKEtokenDoNotUse1234567890"
DOCKER_TOKEN = "dckr_pat_FAKE_token_123"
API_KEY = "phx-FAKE-api-key-0123456789"
RUNNER = pwd.getpwuid(os.geteuid()).pw_name    # the service user in tests: never a user made on this machine


# ---- 910: Portainer


def test_portainer_run_args(shell):
    r = shell.run(P910, 'portainer_run_args "$(portainer_image 2.21.4)" 9443 /var/lib/portainer /etc/phoenix/portainer/pw')
    args = r.stdout.splitlines()
    assert args[:3] == ["run", "-d", "--label"] and args[3].startswith("phoenix.spec=")
    assert args[4:] == [
        "--name", "portainer", "--restart=always", "-p", "9443:9443",
        "-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", "/var/lib/portainer:/data",
        "-v", "/etc/phoenix/portainer/pw:/run/secrets/portainer_admin_password:ro",
        "portainer/portainer-ce:2.21.4", "-H", "unix:///var/run/docker.sock",
        "--admin-password-file", "/run/secrets/portainer_admin_password",
    ]


def test_portainer_spec_hash_follows_settings(shell):
    r = shell.run(P910, """
        portainer_spec_hash img:1 9443 /d /pw; portainer_spec_hash img:1 9443 /d /pw
        portainer_spec_hash img:1 9444 /d /pw; portainer_spec_hash img:2 9443 /d /pw
    """)
    a, b, c, d = r.stdout.split()
    assert a == b and len({a, c, d}) == 3


@pytest.mark.parametrize(("state", "action"), [
    ("", "create"),
    ("portainer/portainer-ce:2.21.4 abc true", "nothing"),
    ("portainer/portainer-ce:2.21.4 abc false", "start"),
    ("portainer/portainer-ce:2.20.0 abc true", "replace"),
    ("portainer/portainer-ce:2.21.4 other true", "replace"),
    ("portainer/portainer-ce:2.21.4  true", "replace"),       # made by hand: no phoenix.spec label
])
def test_container_decide(shell, state, action):
    r = shell.run(P910, f'phx_container_decide "{state}" portainer/portainer-ce:2.21.4 abc')
    assert r.stdout.strip() == action


def portainer_context(tmp: Path, version: str = "2.33.5"):
    return make_context(portainer={"role": "server", "port": 9443, "version": version, "data_dir": str(tmp / "data")},
                        secrets=["portainer_password"])


# A stand-in curl for Portainer's API: status, login (the body file must hold the admin password), the environments
# and the local environment's containers ($FAKE_CONTAINERS_FAIL: what a Portainer too old for Docker 29 answers).
PORTAINER_CURL = r"""#!/bin/bash
printf 'curl %s\n' "$*" >> "$FAKE_LOG"
body="" url=""
prev=""
for a in "$@"; do
    [ "$prev" = --data-binary ] && body="${a#@}"
    case "$a" in https://*) url="$a" ;; esac
    prev="$a"
done
case "$url" in
    */api/system/status) echo '{"Version":"2.33.5"}' ;;
    */api/auth) [ "$(jq -r .Password "$body")" = "$FAKE_PASSWORD" ] || { echo '{"message":"Invalid credentials"}'; exit 22; }
               echo '{"jwt":"fake.jwt.token"}' ;;
    */api/endpoints) echo '[{"Id":3,"Name":"local","Type":1,"URL":"unix:///var/run/docker.sock"}]' ;;
    */api/endpoints/3/docker/containers/json)
        if [ -n "${FAKE_CONTAINERS_FAIL:-}" ]; then echo '{"message":"client version 1.41 is too old"}'; exit 22; fi
        echo '[{"Names":["/portainer"]},{"Names":["/other"]}]' ;;
    *) exit 7 ;;
esac
"""


@pytest.fixture
def portainer_api(fakebin):
    (fakebin.dir / "curl").write_text(PORTAINER_CURL)
    fakebin.env["FAKE_PASSWORD"] = PASSWORD
    return fakebin


def test_portainer_main_keeps_the_password_off_command_lines(shell, portainer_api, tmp_path):
    fakebin = portainer_api
    shell.secret("portainer_password", PASSWORD)
    pwfile = tmp_path / "portainer" / "admin_password"
    env = {**fakebin.env, "PORTAINER_PASSWORD_FILE": str(pwfile)}
    first = shell.run(P910, "main", context=portainer_context(tmp_path), env=env)
    assert "created container portainer (portainer/portainer-ce:2.33.5, https port 9443)" in first.stdout
    assert "Portainer's local environment (id 3) loads and lists its containers" in first.stdout
    assert pwfile.read_text() == PASSWORD
    assert oct(pwfile.stat().st_mode & 0o777) == "0o600"
    runs = [c for c in fakebin.calls() if c.startswith("docker run ")]
    assert len(runs) == 1 and "--admin-password-file /run/secrets/portainer_admin_password" in runs[0]
    assert f"{pwfile}:/run/secrets/portainer_admin_password:ro" in runs[0]

    second = shell.run(P910, "main", context=portainer_context(tmp_path), env=env)
    assert second.stdout.strip().splitlines()[-1] == "phoenix_hypervisor_lxc_910: nothing to change"
    assert len([c for c in fakebin.calls() if c.startswith("docker run ")]) == 1

    changed = portainer_context(tmp_path)
    changed["portainer"]["port"] = 9444
    third = shell.run(P910, "main", context=changed, env=env)
    assert "removed container portainer" in third.stdout
    assert [c for c in fakebin.calls() if c.startswith("docker run ")][-1].count("-p 9444:9443") == 1

    everything = "\n".join(fakebin.calls()) + first.stdout + first.stderr + second.stdout + third.stdout
    assert PASSWORD not in everything and "fake.jwt.token" not in everything


def test_portainer_refuses_a_version_too_old_for_docker_29(shell, portainer_api, tmp_path):
    shell.secret("portainer_password", PASSWORD)
    env = {**portainer_api.env, "PORTAINER_PASSWORD_FILE": str(tmp_path / "pw")}
    r = shell.run(P910, "main", context=portainer_context(tmp_path, "2.21.4"), env=env, check=False)
    assert r.returncode == 1 and "Portainer 2.21.4 cannot manage Docker 29" in r.stderr and "2.33.5" in r.stderr
    assert portainer_api.calls() == []


def test_portainer_that_cannot_list_the_local_containers_fails(shell, portainer_api, tmp_path):
    """/api/system/status answers, but the local environment does not load: the layer is not done."""
    shell.secret("portainer_password", PASSWORD)
    env = {**portainer_api.env, "PORTAINER_PASSWORD_FILE": str(tmp_path / "pw"), "FAKE_CONTAINERS_FAIL": "1"}
    r = shell.run(P910, "main", context=portainer_context(tmp_path), env=env, check=False)
    assert r.returncode == 1 and "cannot list the containers of its local environment" in r.stderr
    assert "Portainer answers on https://127.0.0.1:9443" in r.stdout


def test_portainer_with_another_admin_password_fails_clearly(shell, portainer_api, tmp_path):
    shell.secret("portainer_password", PASSWORD)
    env = {**portainer_api.env, "PORTAINER_PASSWORD_FILE": str(tmp_path / "pw"), "FAKE_PASSWORD": "the-first-password"}
    r = shell.run(P910, "main", context=portainer_context(tmp_path), env=env, check=False)
    assert r.returncode == 1 and "cannot log in to Portainer as admin" in r.stderr and PASSWORD not in r.stderr


def test_a_present_image_is_not_pulled(shell, portainer_api, tmp_path):
    shell.secret("portainer_password", PASSWORD)
    env = {**portainer_api.env, "PORTAINER_PASSWORD_FILE": str(tmp_path / "pw")}
    r = shell.run(P910, "main", context=portainer_context(tmp_path), env=env)
    assert "image portainer/portainer-ce:2.33.5 is present: not pulled" in r.stdout
    assert not any(c.startswith("docker pull") for c in portainer_api.calls())
    # absent: pulled
    (portainer_api.dir / "docker").write_text(portainer_api.dir.joinpath("docker").read_text().replace(
        "case \"$1\" in", "case \"$1\" in\n    image) exit 1 ;;", 1))
    shell.run(P910, "docker rm -f portainer; main", context=portainer_context(tmp_path), env=env)
    assert any(c.startswith("docker pull -q portainer/portainer-ce:2.33.5") for c in portainer_api.calls())


def test_a_data_dir_of_an_unmapped_owner_is_named(shell, portainer_api, tmp_path):
    shell.secret("portainer_password", PASSWORD)
    (tmp_path / "data").mkdir()
    env = {**portainer_api.env, "PORTAINER_PASSWORD_FILE": str(tmp_path / "pw")}
    r = shell.run(P910, "stat() { echo 65534; }\nchown() { return 1; }\nmain", context=portainer_context(tmp_path),
                  env=env, check=False)
    assert r.returncode == 1 and "belongs to uid 65534" in r.stderr and "100000:100000" in r.stderr


def test_portainer_without_docker_daemon(shell, fakebin, tmp_path):
    shell.secret("portainer_password", PASSWORD)
    (fakebin.dir / "docker").write_text("#!/bin/sh\nexit 1\n")
    env = {**fakebin.env, "PORTAINER_PASSWORD_FILE": str(tmp_path / "pw")}
    r = shell.run(P910, "main", context=portainer_context(tmp_path), env=env)
    assert "neither is Docker: Portainer not started" in r.stdout


def test_portainer_refuses_a_short_password(shell, tmp_path):
    shell.secret("portainer_password", "short")
    r = shell.run(P910, "write_password_file", env={"PORTAINER_PASSWORD_FILE": str(tmp_path / "pw")}, check=False)
    assert r.returncode == 1 and "shorter than 12" in r.stderr and "short\n" not in r.stderr


# ---- 950: vLLM service

VLLM_CTX = make_context(
    gpus=[0, 1],
    vllm={"version": "0.11.0", "model": "Qwen/Qwen3-Coder-30B-A3B-Instruct", "served_model_name": "qwen3-coder-30b", "port": 8000,
          "max_model_len": 32768, "gpu_memory_utilization": 0.9, "tensor_parallel_size": 2, "model_cache": "/models",
          "args": ["--enable-prefix-caching", "--override-generation-config", '{"temperature": 0.7, "top_p": 0.8}',
                   "--chat-template=/etc/vllm/100%$HOME.jinja"]},
    secrets=["hf_token"],
)


def test_vllm_serve_args(shell):
    args = shell.run(P950, "vllm_serve_args", context=VLLM_CTX).stdout.splitlines()
    assert args == [
        "serve", "Qwen/Qwen3-Coder-30B-A3B-Instruct", "--host", "0.0.0.0", "--port", "8000",
        "--served-model-name", "qwen3-coder-30b", "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.9",
        "--max-model-len", "32768", "--enable-prefix-caching", "--override-generation-config",
        '{"temperature": 0.7, "top_p": 0.8}', "--chat-template=/etc/vllm/100%$HOME.jinja",
        "--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder",
    ]


@pytest.mark.parametrize(("model", "version", "args", "tools"), [
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "0.10.0", [], True),
    ("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8", "0.11.2", [], True),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "0.9.2", [], False),          # no qwen3_coder parser before 0.10.0
    ("Qwen/Qwen3-8B", "0.11.0", [], False),
    ("Qwen/Qwen3-Coder-30B-A3B-Instruct", "0.11.0", ["--tool-call-parser=hermes"], False),   # the config's choice
])
def test_qwen3_coder_gets_tool_calling(shell, model, version, args, tools):
    ctx = make_context(gpus=[0], vllm={"model": model, "version": version, "args": args})
    out = shell.run(P950, "vllm_serve_args", context=ctx).stdout.splitlines()
    assert (out[-3:] == ["--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder"]) == tools
    assert out.count("--tool-call-parser") + sum(a.startswith("--tool-call-parser=") for a in out) <= 1


def test_vllm_serve_args_defaults(shell):
    ctx = make_context(gpus=[0], vllm={"model": "Qwen/Qwen3-8B", "dtype": "bfloat16"})
    args = shell.run(P950, "vllm_serve_args", context=ctx).stdout.splitlines()
    assert args == ["serve", "Qwen/Qwen3-8B", "--host", "0.0.0.0", "--port", "8000", "--served-model-name", "Qwen3-8B",
                    "--tensor-parallel-size", "1", "--gpu-memory-utilization", "0.9", "--dtype", "bfloat16"]


def test_vllm_needs_a_model(shell):
    r = shell.run(P950, "vllm_unit_render", context=make_context(), check=False)
    assert r.returncode != 0 and "no vllm.model" in r.stderr


@pytest.mark.parametrize(("arg", "quoted"), [
    ("--port", "--port"), ("Qwen/Qwen3-8B", "Qwen/Qwen3-8B"), ("a b", '"a b"'), ('{"x": 1}', '"{\\"x\\": 1}"'),
    ("100%", "100%%"), ("$HOME", "$$HOME"), ("back\\slash", '"back\\\\slash"'), ("a b%", '"a b%%"'),
])
def test_systemd_quote(shell, arg, quoted):
    assert shell.run(P950, 'systemd_quote "$ARG"', env={"ARG": arg}).stdout == quoted


def test_vllm_unit_render(shell):
    unit = shell.run(P950, "vllm_unit_render", context=VLLM_CTX).stdout
    lines = unit.splitlines()
    assert ("ExecStart=/opt/vllm/bin/vllm serve Qwen/Qwen3-Coder-30B-A3B-Instruct --host 0.0.0.0 --port 8000 "
            "--served-model-name qwen3-coder-30b --tensor-parallel-size 2 --gpu-memory-utilization 0.9 "
            '--max-model-len 32768 --enable-prefix-caching --override-generation-config '
            '"{\\"temperature\\": 0.7, \\"top_p\\": 0.8}" --chat-template=/etc/vllm/100%%$$HOME.jinja '
            "--enable-auto-tool-choice --tool-call-parser qwen3_coder") in lines
    assert "EnvironmentFile=/etc/vllm/vllm.env" in lines
    assert "WorkingDirectory=/models" in lines
    assert "WantedBy=multi-user.target" in lines
    assert "HF_TOKEN" not in unit and "api-key" not in unit and "API_KEY" not in unit
    for line in ("User=vllm", "Group=vllm", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                 "PrivateTmp=yes", "ReadWritePaths=/models", "StateDirectory=vllm"):
        assert line in lines
    assert not any(x.startswith(("PrivateDevices", "DevicePolicy")) for x in lines)    # the GPUs stay reachable


def test_vllm_unit_parses_with_systemd_analyze(shell, tmp_path):
    """systemd itself accepts the unit, quoting of ExecStart included (where systemd-analyze is installed)."""
    import shutil
    import subprocess
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "vllm").write_text("#!/bin/sh\n")
    (venv / "bin" / "vllm").chmod(0o755)
    unit = tmp_path / "vllm.service"
    unit.write_text(shell.run(P950, "vllm_unit_render", context=VLLM_CTX, env={"VLLM_VENV": str(venv)}).stdout)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert "vllm.service" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_vllm_env_render(shell):
    shell.secret("hf_token", HF_TOKEN)
    shell.secret("vllm_api_key", API_KEY)
    env = shell.run(P950, "vllm_env_render", context=VLLM_CTX).stdout.splitlines()
    assert env == ["HF_HOME=/models", "VLLM_NO_USAGE_STATS=1", "DO_NOT_TRACK=1", f"VLLM_API_KEY={API_KEY}",
                   f"HF_TOKEN={HF_TOKEN}"]


def test_vllm_env_without_token(shell):
    shell.secret("vllm_api_key", API_KEY)
    env = shell.run(P950, "vllm_env_render", context=VLLM_CTX).stdout
    assert "HF_TOKEN" not in env


@pytest.mark.parametrize(("key", "message"), [
    (None, "secret vllm_api_key is not available"), ("abc123", "shorter than 16 characters"),
    ("x" * 20 + " $(id)", "holds characters other than"),
])
def test_vllm_needs_a_good_api_key(shell, key, message):
    if key is not None:
        shell.secret("vllm_api_key", key)
    r = shell.run(P950, "vllm_env_render", context=VLLM_CTX, check=False)
    assert r.returncode == 1 and message in r.stderr and "VLLM_API_KEY" not in r.stdout
    assert key is None or key not in r.stderr


@pytest.mark.parametrize(("bytes_", "cached", "seconds"), [
    ("61000000000", "", 600 + 61 * 30), ("16400000000", "", 600 + 17 * 30), ("", "", 1800),
    ("61000000000", "cached", 600), ("nonsense", "", 1800),
])
def test_the_health_wait_scales_with_the_model(shell, bytes_, cached, seconds):
    r = shell.run(P950, f'vllm_health_timeout "{bytes_}" "{cached}"')
    assert r.stdout.strip() == str(seconds)


def test_vllm_env_refuses_odd_token(shell):
    shell.secret("vllm_api_key", API_KEY)
    shell.secret("hf_token", "hf_x\nEVIL=1 $(x)")
    r = shell.run(P950, "vllm_env_render", context=VLLM_CTX, check=False)
    assert r.returncode == 0 or "holds characters" in r.stderr   # only the first line is the token
    shell.secret("hf_token", 'hf_"x" y')
    r = shell.run(P950, "vllm_env_render", context=VLLM_CTX, check=False)
    assert r.returncode == 1 and "holds characters" in r.stderr and 'hf_"x"' not in r.stderr


def fake_vllm_install(tmp_path):
    """A venv with a stub `vllm`, and a context whose model cache is under tmp_path."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "vllm").write_text("#!/bin/sh\n")
    (venv / "bin" / "vllm").chmod(0o755)
    ctx = make_context(**{**VLLM_CTX, "vllm": {**VLLM_CTX["vllm"], "model_cache": str(tmp_path / "models")}})
    return venv, ctx


def test_vllm_main_without_systemd(shell, fakebin, tmp_path):
    shell.secret("hf_token", HF_TOKEN)
    shell.secret("vllm_api_key", API_KEY)
    venv, ctx = fake_vllm_install(tmp_path)
    env = {**fakebin.env, "VLLM_VENV": str(venv), "VLLM_UNIT_FILE": str(tmp_path / "vllm.service"),
           "VLLM_ENV_FILE": str(tmp_path / "etc-vllm" / "vllm.env"), "VLLM_USER": RUNNER}
    first = shell.run(P950, "phx_has_systemd() { return 1; }; main", context=ctx, env=env)
    assert "vllm.service enabled but not started" in first.stdout
    assert "systemd is not running: not waiting for http://127.0.0.1:8000/health" in first.stdout
    envfile = tmp_path / "etc-vllm" / "vllm.env"
    assert oct(envfile.stat().st_mode & 0o777) == "0o600" and f"HF_TOKEN={HF_TOKEN}" in envfile.read_text()
    assert f"ExecStart={venv}/bin/vllm serve" in (tmp_path / "vllm.service").read_text()
    assert "systemctl enable vllm.service" in fakebin.calls()

    second = shell.run(P950, "phx_has_systemd() { return 1; }; main", context=ctx, env=env)
    assert second.stdout.strip().splitlines()[-1] == "phoenix_hypervisor_lxc_950: nothing to change"

    everything = "\n".join(fakebin.calls()) + first.stdout + first.stderr + second.stdout
    assert HF_TOKEN not in everything
    assert HF_TOKEN not in (tmp_path / "vllm.service").read_text()


def test_vllm_main_with_systemd_waits_for_health(shell, fakebin, tmp_path):
    """With systemd (simulated), the unit is (re)started, /health is polled until it answers, and the key is
    checked: /v1/models answers 401 without it (this stand-in curl: 200 only with a header file)."""
    shell.secret("hf_token", HF_TOKEN)
    shell.secret("vllm_api_key", API_KEY)
    (fakebin.dir / "curl").write_text('#!/bin/bash\nprintf "curl %s\\n" "$*" >> "$FAKE_LOG"\n'
                                      'case "$*" in *http_code*-H\\ @*) printf 200 ;; *http_code*) printf 401 ;; esac\n')
    venv, ctx = fake_vllm_install(tmp_path)
    env = {**fakebin.env, "VLLM_VENV": str(venv), "VLLM_UNIT_FILE": str(tmp_path / "vllm.service"),
           "VLLM_ENV_FILE": str(tmp_path / "vllm.env"), "VLLM_USER": RUNNER}
    r = shell.run(P950, "phx_has_systemd() { return 0; }; main", context=ctx, env=env)
    calls = fakebin.calls()
    assert "systemctl daemon-reload" in calls and "systemctl restart vllm.service" in calls
    assert any(c.startswith("curl ") and "http://127.0.0.1:8000/health" in c for c in calls)
    assert "vLLM serves qwen3-coder-30b on port 8000" in r.stdout
    assert "the API key is enforced on port 8000" in r.stdout
    assert "waiting up to 1800s for http://127.0.0.1:8000/health" in r.stdout     # size unknown: 30 minutes
    for secret in (HF_TOKEN, API_KEY):
        assert secret not in "\n".join(calls) + r.stdout + r.stderr


def test_vllm_main_refuses_an_api_without_the_key(shell, fakebin, tmp_path):
    shell.secret("vllm_api_key", API_KEY)
    (fakebin.dir / "curl").write_text('#!/bin/sh\ncase "$*" in *http_code*) printf 200 ;; esac\n')
    venv, ctx = fake_vllm_install(tmp_path)
    env = {**fakebin.env, "VLLM_VENV": str(venv), "VLLM_UNIT_FILE": str(tmp_path / "vllm.service"),
           "VLLM_ENV_FILE": str(tmp_path / "vllm.env"), "VLLM_USER": RUNNER}
    r = shell.run(P950, "phx_has_systemd() { return 0; }; main", context=ctx, env=env, check=False)
    assert r.returncode == 1 and "answered /v1/models without the API key (HTTP 200)" in r.stderr


def test_an_unwritable_model_cache_fails_before_the_service_starts(shell, fakebin, tmp_path):
    shell.secret("vllm_api_key", API_KEY)
    venv, ctx = fake_vllm_install(tmp_path)
    env = {**fakebin.env, "VLLM_VENV": str(venv), "VLLM_UNIT_FILE": str(tmp_path / "vllm.service"),
           "VLLM_ENV_FILE": str(tmp_path / "vllm.env"), "VLLM_USER": RUNNER}
    r = shell.run(P950, "as_vllm_user() { return 1; }\nchown() { return 1; }\nphx_has_systemd() { return 0; }; main",
                  context=ctx, env=env, check=False)
    assert r.returncode == 1 and "is not writable by" in r.stderr and "mapped uid" in r.stderr
    assert not any(c.startswith("systemctl") for c in fakebin.calls())


def test_vllm_health_timeout(shell, fakebin, tmp_path):
    (fakebin.dir / "curl").write_text("#!/bin/sh\nexit 7\n")
    r = shell.run(P950, "PHX_WAIT_INTERVAL=0 PHX_WAIT_TIMEOUT=1 phx_wait_for vllm_healthy 8000 || echo timeout",
                  env=fakebin.env)
    assert r.stdout.strip() == "timeout"


# ---- docker.sh: login and toolkit logic


@pytest.mark.parametrize(("gpus", "wanted"), [("", False), ("0,1", True), ("0", True), (" , ", False)])
def test_docker_wants_toolkit_only_with_gpus(shell, gpus, wanted):
    r = shell.run("features/docker.sh", f'docker_want_nvidia_toolkit "{gpus}"', check=False)
    assert (r.returncode == 0) == wanted


def test_docker_toolkit_repo_and_packages(shell):
    r = shell.run("features/docker.sh", "docker_nvidia_repo_line; docker_packages distro")
    assert r.stdout.splitlines() == [
        "deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.asc] "
        "https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /",
        "docker.io",
    ]


@pytest.mark.parametrize(("before", "after"), [
    ("", "\n[nvidia-container-cli]\nno-cgroups = true\n"),
    ("[nvidia-container-cli]\nenvironment = []\n#no-cgroups = false\nldconfig = \"@/sbin/ldconfig\"\n",
     "[nvidia-container-cli]\nno-cgroups = true\nenvironment = []\nldconfig = \"@/sbin/ldconfig\"\n"),
    ("[nvidia-container-cli]\nno-cgroups = true\n", "[nvidia-container-cli]\nno-cgroups = true\n"),
    ("accept-nvidia-visible-devices-as-volume-mounts = false\n",
     "accept-nvidia-visible-devices-as-volume-mounts = false\n[nvidia-container-cli]\nno-cgroups = true\n"),
])
def test_docker_nvidia_no_cgroups(shell, before, after):
    r = shell.run("features/docker.sh", 'docker_nvidia_no_cgroups "$(cat)"', stdin=before)
    assert r.stdout == after


def test_no_secret_in_any_script_argument_list():
    """Static guard: secrets are only read through phx_secret into variables, never expanded into a process's argv
    by the scripts' known command builders (the dynamic tests above record real calls)."""
    for path in Path(__file__).resolve().parents[2].joinpath("images").rglob("*.sh"):
        for line in path.read_text().splitlines():
            if "--password " in line or "--admin-password " in line or "--token " in line:
                pytest.fail(f"{path.name}: a secret passed as an argument: {line.strip()}")


def test_a_crash_loop_is_not_waited_out(shell, tmp_path):
    """The service restarting again and again ends the wait at once (exit 2), not after the 30-minute timeout."""
    counter = tmp_path / "n"
    counter.write_text("5\n")          # restarts from an earlier run are not counted
    code = (f'vllm_healthy() {{ return 1; }}\nvllm_crashes() {{ local n; n=$(cat "{counter}"); '
            f'echo $((n + 1)) > "{counter}"; echo "$n"; }}\n'
            'rc=0; PHX_VLLM_WAIT_INTERVAL=0 vllm_wait_healthy 8000 1800 || rc=$?; echo "rc=$rc"')
    r = shell.run(P950, code)
    assert r.stdout.strip() == "rc=2" and counter.read_text().strip() == "9"


@pytest.mark.parametrize("sub, crashes", [("auto-restart", "3"), ("running", "2"), ("", "2")])
def test_a_crash_counts_at_once_while_systemd_waits_to_restart(shell, sub: str, crashes: str):
    """NRestarts counts a crash only once systemd has restarted the unit (RestartSec later); a unit waiting out
    RestartSec (SubState auto-restart) has crashed once more."""
    code = (f'systemctl() {{ case "$*" in *NRestarts*) echo 2;; *SubState*) echo "{sub}";; esac; }}\n'
            'vllm_crashes')
    assert shell.run(P950, code).stdout.strip() == crashes
