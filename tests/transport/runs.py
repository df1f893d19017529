"""Script runs for the pct tests: a ScriptRun from a script body, and an output callback that keeps times."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from phoenix.transport.base import ScriptRun

LIB = 'phx_log() { printf \'%s\\n\' "$*"; }\nPHX_LIB_LOADED=yes\n'
NASTY = "a b  'single' \"double\" $(touch {sentinel}) `touch {sentinel}` ${{HOME}} \\ ; | & * ~ \t\nsecond line\n"


def make_run(tmp_path: Path, ctid: int, body: str, name: str = "feature", **kw) -> ScriptRun:
    d = tmp_path / "src"
    d.mkdir(exist_ok=True)
    script = d / f"{ctid}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.sh"
    script.write_text("set -eu\nsource \"$PHOENIX_LIB\"\n" + body)
    lib = d / "phoenix-common.sh"
    lib.write_text(LIB)
    kw.setdefault("context", {"ctid": ctid, "name": f"guest{ctid}"})
    kw.setdefault("log_path", tmp_path / ".cache" / "logs" / f"ct{ctid}.log")
    return ScriptRun(ctid=ctid, layer=f"ct{ctid}", name=name, script=script, lib=lib, **kw)


class Lines(list):
    """An output callback that remembers when each line arrived."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            self.append(line)
            self.times.append(time.monotonic())
