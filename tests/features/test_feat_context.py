"""The test context has the shape of phoenix.context.build_context output, and the lib reads it."""

from __future__ import annotations

from pathlib import Path

from phoenix.config.estate import load_estate
from phoenix.kinds.lxc.context import build_context

from .conftest import BASE_CONTEXT, IMAGES, REPO, make_context


def shape(value):
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return "leaf"


def test_base_context_matches_build_context():
    estate = load_estate(REPO / "etc", IMAGES)
    for ctid in (902, 950):
        assert shape(build_context(estate, ctid)) == shape(BASE_CONTEXT), ctid


def test_phx_ctx_reads_env(shell):
    ctx = make_context(gpus=[0, 1], extra_packages=["htop", "tmux"], vllm={"model": "Qwen/Qwen3-8B"},
                       user={"username": "ops", "ssh_public_key": "ssh-ed25519 AAA x", "sudo": False})
    r = shell.run("lib/phoenix-common.sh", """
        echo "gpus=$(phx_ctx gpus)"
        echo "model=$(phx_ctx vllm_model)"
        echo "missing=$(phx_ctx vllm_max_model_len 4096)"
        phx_ctx_list extra_packages
        echo "user=$(phx_ctx user_username) sudo=$(phx_ctx user_sudo)"
        phx_bool "$(phx_ctx user_sudo)" || echo "no sudo"
        echo "feature=$PHOENIX_FEATURE"
    """, context=ctx)
    assert r.stdout.splitlines() == ["gpus=0,1", "model=Qwen/Qwen3-8B", "missing=4096", "htop", "tmux",
                                     "user=ops sudo=false", "no sudo", "feature=bash"]


def test_json_array_keeps_commas_and_spaces(shell):
    ctx = make_context(vllm={"args": ["--override-generation-config", '{"a": 1, "b": 2}', "--enable-prefix-caching"]})
    r = shell.run("lib/phoenix-common.sh", "phx_ctx_json_array .vllm.args vllm_args | tr '\\0' '|'", context=ctx)
    assert r.stdout == '--override-generation-config|{"a": 1, "b": 2}|--enable-prefix-caching|'


def test_secret_is_read_without_newline(shell):
    shell.secret("hf_token", "hf_abc123")
    r = shell.run("lib/phoenix-common.sh", 'v="$(phx_secret hf_token)"; echo "[${#v}]"; phx_has_secret docker_token || echo none')
    assert r.stdout.splitlines() == ["[9]", "none"]
    assert "hf_abc123" not in r.stdout + r.stderr


def test_missing_secret_is_an_error(shell):
    r = shell.run("lib/phoenix-common.sh", "phx_secret portainer_password", check=False)
    assert r.returncode == 1 and "secret portainer_password is not available" in r.stderr


def test_write_file_is_idempotent(shell, tmp_path: Path):
    target = tmp_path / "etc" / "x.conf"
    code = f"""
        printf 'a=1\\n' | phx_write_file {target} 0640
        printf 'a=1\\n' | phx_write_file {target} 0640
        phx_file_changed || echo unchanged
        chmod 0644 {target}
        printf 'a=1\\n' | phx_write_file {target} 0640
        phx_finish
    """
    r = shell.run("lib/phoenix-common.sh", code)
    assert r.stdout.splitlines() == [f"bash: wrote {target}", "unchanged",
                                     f"bash: set mode 0640 on {target}", "bash: done (2 change(s))"]
    assert oct(target.stat().st_mode & 0o777) == "0o640"


def test_finish_says_nothing_to_change(shell):
    assert shell.run("features/base_setup.sh", "phx_finish").stdout == "base_setup: nothing to change\n"


def test_has_systemd_false_here_without_systemd(shell):
    r = shell.run("lib/phoenix-common.sh", "phx_has_systemd && echo yes || echo no")
    expected = "yes" if Path("/run/systemd/system").is_dir() and Path("/proc/1/comm").read_text().strip() == "systemd" else "no"
    assert r.stdout.strip() == expected
