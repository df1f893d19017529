"""read_secret / ensure_placeholder_secret: permissions like ssh, values never in messages."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from phoenix.errors import PhoenixError
from phoenix.secrets import PLACEHOLDER_PREFIX, ensure_placeholder_secret, read_secret

VALUE = "hf_s3cr3t-VALUE"


def _write(path, text, mode):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_0600_accepted_and_trailing_newline_stripped(tmp_path):
    assert read_secret(_write(tmp_path / "hf_token", VALUE + "\n", 0o600)) == VALUE
    assert read_secret(_write(tmp_path / "crlf", VALUE + "\r\n", 0o400)) == VALUE
    assert read_secret(str(_write(tmp_path / "bare", VALUE, 0o600))) == VALUE


def test_inner_whitespace_kept(tmp_path):
    assert read_secret(_write(tmp_path / "pw", " a b \n", 0o600)) == " a b "


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666, 0o610])
def test_group_or_other_access_refused_with_fix(tmp_path, mode):
    p = _write(tmp_path / "hf_token", VALUE, mode)
    with pytest.raises(PhoenixError) as e:
        read_secret(p)
    msg = str(e.value)
    assert str(p) in msg
    assert f"{mode:04o}" in msg
    assert f"chmod 600 {p}" in msg
    assert VALUE not in msg


def test_missing_file_says_how_to_create_it(tmp_path):
    p = tmp_path / "nope" / "docker_token"
    with pytest.raises(PhoenixError) as e:
        read_secret(p)
    msg = str(e.value)
    assert str(p) in msg and "does not exist" in msg
    assert f"install -m 600 /dev/null {p}" in msg


def test_directory_and_empty_file_refused(tmp_path):
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(PhoenixError, match="not a regular file"):
        read_secret(d)
    with pytest.raises(PhoenixError, match="empty"):
        read_secret(_write(tmp_path / "empty", "\n", 0o600))


def test_value_never_logged(tmp_path, caplog):
    caplog.set_level("DEBUG")
    read_secret(_write(tmp_path / "t", VALUE, 0o600))
    with pytest.raises(PhoenixError):
        read_secret(_write(tmp_path / "t2", VALUE, 0o644))
    assert VALUE not in caplog.text


def test_placeholder_created_0600_whatever_the_umask(tmp_path):
    old = os.umask(0o277)   # would leave 0400 if the mode came from open() alone
    try:
        p = ensure_placeholder_secret(tmp_path / "sim" / "hf_token", "hf_token")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert read_secret(p) == f"{PLACEHOLDER_PREFIX}-hf_token"
    assert [x.name for x in p.parent.iterdir()] == ["hf_token"]   # no temp file left behind


def test_placeholder_never_overwrites(tmp_path):
    p = _write(tmp_path / "hf_token", VALUE, 0o600)
    assert ensure_placeholder_secret(p, "hf_token") == p
    assert read_secret(p) == VALUE


def test_placeholder_umask_cannot_widen(tmp_path):
    old = os.umask(0)
    try:
        p = ensure_placeholder_secret(tmp_path / "x", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_placeholder_created_by_many_threads_at_once(tmp_path):
    """`doit -n 4` bakes several app containers that need the same secret: each asks for the placeholder."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    target = tmp_path / "etc" / "portainer_password.conf"
    for _ in range(20):  # the race is between the existence check and the temporary file: try it many times
        target.unlink(missing_ok=True)
        start = threading.Barrier(8)

        def create(start: threading.Barrier = start) -> Path:
            start.wait()
            return ensure_placeholder_secret(target, "portainer_password")

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(lambda _: create(), range(8))) == {target}
        assert read_secret(target) == f"{PLACEHOLDER_PREFIX}-portainer_password"
        assert [x.name for x in target.parent.iterdir()] == [target.name]  # no temporary file left behind
