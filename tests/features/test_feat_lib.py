"""images/lib/phoenix-common.sh itself: errexit reaches into command substitutions, a failure names its command and
line, and temporary files go away on exit, failure and interrupt."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import LIB


def bash(tmp_path: Path, code: str, **kw) -> subprocess.Popen[str]:
    script = tmp_path / "feat.sh"
    script.write_text(f'#!/usr/bin/env bash\nsource "{LIB}"\n{code}\n')
    env = {"PATH": os.environ["PATH"], "PHOENIX_FEATURE": "feat", "LC_ALL": "C.UTF-8"}
    return subprocess.Popen(["bash", str(script)], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def run(tmp_path: Path, code: str) -> tuple[int, str, str]:
    p = bash(tmp_path, code)
    out, err = p.communicate(timeout=30)
    return p.returncode, out, err


def test_a_failure_inside_a_command_substitution_stops_the_script(tmp_path):
    """Without inherit_errexit, bash goes on after `false` inside $(...) and the variable gets "ok"."""
    rc, out, err = run(tmp_path, 'f() {\n    false\n    echo ok\n}\nx="$(f)"\necho "reached: $x"')
    assert rc == 1
    assert "reached" not in out
    assert "feat: ERROR: command failed (exit 1) at feat.sh line 4: false" in err


def test_the_err_trap_names_the_failing_command(tmp_path):
    rc, out, err = run(tmp_path, 'echo before\ngrep -q nothing /dev/null\necho after')
    assert (rc, out) == (1, "before\n")
    assert err == "feat: ERROR: command failed (exit 1) at feat.sh line 4: grep -q nothing /dev/null\n"


def test_conditions_do_not_trigger_the_trap(tmp_path):
    rc, out, err = run(tmp_path, 'if grep -q x /dev/null; then :; fi\ngrep -q x /dev/null || echo fine')
    assert (rc, out, err) == (0, "fine\n", "")


def test_phx_die_says_one_thing(tmp_path):
    rc, _, err = run(tmp_path, 'phx_die "bad config"')
    assert (rc, err) == (1, "feat: ERROR: bad config\n")


@pytest.mark.parametrize("ending", ["true", "false", "phx_die stop"])
def test_temporary_files_are_removed_at_exit(tmp_path, ending):
    rc, out, _ = run(tmp_path, 'phx_tmpfile f\nphx_tmpdir d\ntouch "$d/inner"\n'
                               'x="$(echo sub)"\n[[ -f "$f" && -f "$d/inner" ]]\necho "$f"\necho "$d"\n' + ending)
    paths = [Path(p) for p in out.split()]
    assert len(paths) == 2
    assert rc == (0 if ending == "true" else 1)
    assert not any(p.exists() for p in paths)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_temporary_files_are_removed_on_interrupt(tmp_path, sig):
    p = bash(tmp_path, 'phx_tmpdir d\necho "$d"\nsleep 30 & wait', start_new_session=True)
    assert p.stdout is not None
    path = Path(p.stdout.readline().strip())
    assert path.is_dir()
    time.sleep(0.2)
    p.send_signal(sig)
    p.wait(timeout=10)
    os.killpg(p.pid, signal.SIGKILL)     # the background sleep
    assert p.returncode != 0
    assert not path.exists()


def test_write_file_leaves_no_temporary_file_when_it_fails(tmp_path):
    target = tmp_path / "dir" / "file"
    rc, _, _ = run(tmp_path, f'printf x | phx_write_file "{target}" 0644 no-such-user:no-such-group')
    assert rc != 0
    assert [p.name for p in target.parent.iterdir()] == []


def test_scripts_leave_the_traps_to_the_library():
    """A script's own `trap ... EXIT` would replace the library's, and its temporary files would stay."""
    from .conftest import all_scripts
    offenders = [f"{p}: {line.strip()}" for p in all_scripts() if p != LIB
                 for line in p.read_text().splitlines() if line.strip().startswith("trap ")]
    assert offenders == []


def test_passwordless_sudo_only_when_configured(tmp_path):
    from phoenix.config.lxc import UserConfig
    assert UserConfig(username="ops").sudo is False
    assert UserConfig(username="ops", sudo=True).sudo is True


def test_base_setup_grants_no_sudo_by_default(shell, tmp_path):
    """The user exists; without user_sudo the script removes (never writes) the NOPASSWD drop-in."""
    from .conftest import make_context
    ctx = make_context(user={"username": "root"})
    r = shell.run("features/base_setup.sh", 'phx_remove_file() { echo "remove $1"; }\n'
                  'phx_apt_install() { echo "install $*"; }\nsetup_user', context=ctx)
    assert "install sudo" not in r.stdout
    assert "remove /etc/sudoers.d/phoenix-root" in r.stdout


def test_phx_die_inside_a_command_substitution_says_one_thing(tmp_path):
    """The ERR traps of the shells around it stay quiet: the user reads the reason once."""
    rc, out, err = run(tmp_path, 'f() { phx_die "no model configured"; }\nx="$(f)"\necho "reached $x"')
    assert (rc, out, err) == (1, "", "feat: ERROR: no model configured\n")


def test_the_run_directory_goes_with_the_run(tmp_path):
    rc, out, _ = run(tmp_path, 'echo "$_PHX_RUN_DIR"; [[ -d "$_PHX_RUN_DIR" ]]')
    assert rc == 0 and out.strip() and not Path(out.strip()).exists()
