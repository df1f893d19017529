"""The features under a real systemd (PID 1 in its own namespaces, tests/features/boot.py): Docker's daemon really
runs and the docker feature's smoke test really starts a container; the 950 unit really runs a stand-in vllm (an HTTP
server answering /health and /v1/models, enforcing VLLM_API_KEY) as the vllm user. Slow, and root only."""

from __future__ import annotations

import json

import pytest

from phoenix.context import to_env, to_json

from .boot import Booted
from .conftest import IMAGES, make_context, need_tool

pytestmark = pytest.mark.slow

API_KEY = "phx-boot-test-key-0123456789"
CONTEXT = make_context(
    gpus=[],       # the Docker part without the NVIDIA toolkit (no GPU here)
    vllm={"version": "0.11.0", "model": "Qwen/Qwen3-Coder-30B-A3B-Instruct", "served_model_name": "coder",
          "port": 8000, "model_cache": "/models"},
    secrets=["vllm_api_key"],
)

STANDIN_VLLM = r"""#!/usr/bin/python3
# A stand-in for `vllm serve`: /health, and /v1/models behind VLLM_API_KEY; records how it was started.
import http.server, json, os, sys
args = sys.argv[1:]
if os.path.exists("/models/standin-fails"):
    print("stand-in vllm: failing on purpose", flush=True)
    sys.exit(3)
port = int(args[args.index("--port") + 1])
key = os.environ.get("VLLM_API_KEY", "")
with open(os.path.join(os.environ["HF_HOME"], "standin.json"), "w") as f:
    json.dump({"argv": args, "uid": os.getuid(), "key_set": bool(key)}, f)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            code, body = 200, b""
        elif self.path == "/v1/models" and self.headers.get("Authorization") != f"Bearer {key}":
            code, body = 401, b'{"error": "Unauthorized"}'
        elif self.path == "/v1/models":
            code, body = 200, json.dumps({"data": [{"id": args[args.index("--served-model-name") + 1]}]}).encode()
        else:
            code, body = 404, b""
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("0.0.0.0", port), H).serve_forever()
"""


@pytest.fixture(scope="module")
def booted(guest_factory, tmp_path_factory):
    need_tool("unshare")
    need_tool("nsenter")
    guest = guest_factory(CONTEXT, {"vllm_api_key": API_KEY})
    guest.run_script(IMAGES / "features/docker.sh")            # installs docker.io in the chroot (no systemd yet)
    guest.sh("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 curl jq"
             " >/dev/null")
    # The guest's network namespace has only lo: no bridge, no iptables (the smoke test runs --network none).
    guest.path("/etc/docker").mkdir(exist_ok=True)
    guest.path("/etc/docker/daemon.json").write_text(json.dumps({"bridge": "none", "iptables": False}) + "\n")
    guest.path("/usr/sbin/policy-rc.d").unlink(missing_ok=True)   # services may start now, as in a real container
    venv = guest.path("/opt/vllm/bin")
    venv.mkdir(parents=True)
    (venv / "vllm").write_text(STANDIN_VLLM)
    (venv / "vllm").chmod(0o755)
    guest.leave()
    b = Booted(guest.root, tmp_path_factory.mktemp("boot") / "console.log")
    try:
        b.wait_running()
        yield b
    finally:  # a throwaway root: killed after 3 s rather than waiting out Docker's 10 s stop of each container
        b.poweroff(timeout=3)


def test_the_docker_feature_starts_a_real_container(booted):
    first = booted.run_script(IMAGES / "features/docker.sh")
    assert "smoke test: a container started and ran (storage driver overlay2)" in first.stdout
    assert booted.sh("docker info --format '{{.Driver}}'").stdout.strip() == "overlay2"
    assert booted.sh("docker image ls -q phoenix/docker-smoke").stdout.strip() == ""   # nothing left in the layer
    second = booted.run_script(IMAGES / "features/docker.sh")
    assert second.stdout.strip().splitlines()[-1] == "docker: nothing to change"
    assert "smoke test: a container started" in second.stdout


def test_the_smoke_test_fails_when_containers_cannot_start(booted):
    """runc that cannot start a container (as runc 1.3.3 on an old lxc-pve): the layer fails, naming lxc-pve."""
    booted.sh("mv /usr/sbin/runc /usr/sbin/runc.real && printf '#!/bin/sh\\necho \"open sysctl "
              "net.ipv4.ip_unprivileged_port_start: permission denied\" >&2\\nexit 1\\n' > /usr/sbin/runc && "
              "chmod 755 /usr/sbin/runc")
    try:
        r = booted.run_script(IMAGES / "features/docker.sh", check=False)
    finally:
        booted.sh("mv /usr/sbin/runc.real /usr/sbin/runc")
    assert r.returncode == 1
    assert "lxc-pve 6.0.5-2 or newer on the host" in r.stderr
    assert "Error response from daemon" in r.stderr and "runc" in r.stderr        # docker's own message is shown


def test_the_vllm_unit_under_systemd(booted):
    app = IMAGES / "apps/phoenix_hypervisor_lxc_950.sh"
    first = booted.run_script(app)
    assert "the API key is enforced on port 8000" in first.stdout
    assert "vLLM serves coder on port 8000" in first.stdout
    started = json.loads(booted.sh("cat /models/standin.json").stdout)
    assert started["uid"] == int(booted.sh("id -u vllm").stdout) and started["key_set"]
    assert API_KEY not in " ".join(started["argv"]) and "--api-key" not in started["argv"]
    assert started["argv"][-3:] == ["--enable-auto-tool-choice", "--tool-call-parser", "qwen3_coder"]
    assert booted.sh("stat -c '%a %U' /etc/vllm/vllm.env").stdout.split() == ["600", "root"]
    props = booted.sh("systemctl show vllm.service -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
                      "-p PrivateTmp").stdout.split()
    assert sorted(props) == ["NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectHome=yes", "ProtectSystem=strict",
                             "User=vllm"]
    pid = booted.sh("systemctl show -p MainPID --value vllm.service").stdout.strip()
    assert API_KEY not in booted.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout

    second = booted.run_script(app)
    assert second.stdout.strip().splitlines()[-1] == "phoenix_hypervisor_lxc_950: nothing to change"
    assert booted.sh("systemctl show -p MainPID --value vllm.service").stdout.strip() == pid     # not restarted


def test_the_vllm_unit_restarts_on_a_config_change_and_shows_the_journal_on_failure(booted):
    app = IMAGES / "apps/phoenix_hypervisor_lxc_950.sh"
    ctx = make_context(**{**CONTEXT, "vllm": {**CONTEXT["vllm"], "port": 8001}})
    ctx["vllm"] = dict(ctx["vllm"])
    booted.root.joinpath("etc/phoenix/context.env").write_text(to_env(ctx))
    booted.root.joinpath("etc/phoenix/context.json").write_text(to_json(ctx))
    moved = booted.run_script(app)
    assert "restarted vllm.service" in moved.stdout and "vLLM serves coder on port 8001" in moved.stdout
    booted.sh("touch /models/standin-fails")
    ctx["vllm"]["port"] = 8002                                   # a change: the unit is rewritten and restarted
    booted.root.joinpath("etc/phoenix/context.env").write_text(to_env(ctx))
    booted.root.joinpath("etc/phoenix/context.json").write_text(to_json(ctx))
    r = subprocess_run_with_short_wait(booted, app)
    booted.sh("rm -f /models/standin-fails")
    assert r.returncode == 1
    assert "vLLM did not become healthy on port 8002: the service crashed" in r.stderr   # not a 30-minute wait
    assert "stand-in vllm: failing on purpose" in r.stderr          # the journal is shown


def subprocess_run_with_short_wait(booted, app):
    """Run the app with a short health wait (PHX_VLLM_HEALTH_TIMEOUT_S), as the transport would pass an env."""
    import subprocess

    from phoenix.transport.base import RUN_DIR, SCRIPT_ENV
    guest = f"{RUN_DIR}/{app.stem}"
    env = [f"{k}={v}" for k, v in SCRIPT_ENV.items()] + ["PHX_VLLM_HEALTH_TIMEOUT_S=120", "PHX_VLLM_WAIT_INTERVAL=1",
           "PHX_VLLM_MAX_RESTARTS=1"]  # one crash is enough to tell a crash loop (each restart waits RestartSec=10)
    return subprocess.run(booted.argv(*env, "/bin/bash", guest), text=True, capture_output=True, timeout=300)


# ---- 910 against the real daemon, with a stand-in image under Portainer's name (no registry here)

STANDIN_PORTAINER = r"""#!/usr/bin/python3
# A stand-in for Portainer's server: HTTPS on 9443, the admin password from --admin-password-file, the local
# environment from -H unix:///var/run/docker.sock, and its containers listed by asking the real Docker socket.
import http.client, http.server, json, socket, ssl, sys
args = sys.argv[1:]
password = open(args[args.index("--admin-password-file") + 1]).read()
host = args[args.index("-H") + 1] if "-H" in args else None

class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/var/run/docker.sock")

class H(http.server.BaseHTTPRequestHandler):
    def answer(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def authed(self):
        return self.headers.get("Authorization") == "Bearer standin-jwt"
    def do_POST(self):
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/api/auth" and data == {"Username": "admin", "Password": password}:
            return self.answer(200, {"jwt": "standin-jwt"})
        self.answer(422, {"message": "Invalid credentials"})
    def do_GET(self):
        if self.path == "/api/system/status":
            return self.answer(200, {"Version": "2.33.5"})
        if not self.authed():
            return self.answer(401, {"message": "Unauthorized"})
        if self.path == "/api/endpoints":
            return self.answer(200, [{"Id": 1, "Name": "local", "Type": 1, "URL": host}] if host else [])
        if self.path == "/api/endpoints/1/docker/containers/json":
            c = Unix("localhost")
            c.request("GET", "/containers/json")
            r = c.getresponse()
            return self.answer(r.status, json.loads(r.read()))
        self.answer(404, {})

server = http.server.HTTPServer(("0.0.0.0", 9443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/standin/cert.pem", "/standin/key.pem")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def test_portainer_against_the_real_daemon(booted, tmp_path):
    """Created, left alone on a rerun, replaced on a port change; the present image is never pulled (there is no
    registry: a pull would fail); the stand-in lists the real daemon's containers for the local environment."""
    import subprocess

    from phoenix.context import to_env, to_json
    standin = booted.root / "standin"
    standin.mkdir(exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(standin / "key.pem"), "-out", str(standin / "cert.pem")], check=True,
                   capture_output=True)
    (standin / "portainer.py").write_text(STANDIN_PORTAINER)
    # Port publishing needs Docker's bridge: allowed here, inside the guest's own network namespace.
    booted.sh("echo '{}' > /etc/docker/daemon.json && systemctl restart docker && docker info >/dev/null")
    booted.sh("tar -C / --one-file-system --exclude=./proc --exclude=./sys --exclude=./dev --exclude=./run "
              "--exclude=./tmp --exclude=./var/lib/docker --exclude=./var/cache/apt --exclude=./usr/share/doc "
              "--exclude=./usr/share/locale -c . | docker import "
              "--change 'ENTRYPOINT [\"/usr/bin/python3\", \"/standin/portainer.py\"]' - portainer/portainer-ce:2.33.5",
              timeout=600)
    ctx = make_context(portainer={"role": "server", "port": 9443, "version": "2.33.5", "data_dir": "/var/lib/portainer"},
                       secrets=["portainer_password"])
    booted.root.joinpath("etc/phoenix/context.env").write_text(to_env(ctx))
    booted.root.joinpath("etc/phoenix/context.json").write_text(to_json(ctx))
    secret = booted.root / "etc/phoenix/secrets/portainer_password"
    secret.write_text("A-long-admin-password-42\n")
    secret.chmod(0o600)
    app = IMAGES / "apps/phoenix_hypervisor_lxc_910.sh"
    first = booted.run_script(app)
    assert "image portainer/portainer-ce:2.33.5 is present: not pulled" in first.stdout
    assert "Portainer's local environment (id 1) loads and lists its containers" in first.stdout
    cid = booted.sh("docker inspect -f '{{.Id}}' portainer").stdout.strip()
    second = booted.run_script(app)
    assert second.stdout.strip().splitlines()[-1] == "phoenix_hypervisor_lxc_910: nothing to change"
    assert booted.sh("docker inspect -f '{{.Id}}' portainer").stdout.strip() == cid
    ctx["portainer"]["port"] = 9444
    booted.root.joinpath("etc/phoenix/context.env").write_text(to_env(ctx))
    booted.root.joinpath("etc/phoenix/context.json").write_text(to_json(ctx))
    third = booted.run_script(app)
    assert "removed container portainer" in third.stdout and "https port 9444" in third.stdout
    assert "loads and lists its containers" in third.stdout
    assert booted.sh("docker inspect -f '{{.Id}}' portainer").stdout.strip() != cid
