"""The end of a run shielded from one more Ctrl-C: an interrupted run's record (.cache/last-run.json, the summary) and
the release of the host's lease take a moment, and a second Ctrl-C pressed in it (or the second signal some
supervisors send) would leave them undone. The first signal in it is told and waited out; another leaves at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
SAID = "phoenix: finishing: writing the run's record and releasing the host's lease (Ctrl-C again to leave now)\n"


@contextmanager
def shielded(say: Callable[[str], object]) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM are said once (say) and waited out; a second one raises
    KeyboardInterrupt as usual. The handlers are restored after. Outside the main thread (where Python cannot set a
    handler) the block runs unshielded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        if len(seen) > 1:
            raise KeyboardInterrupt
        say(SAID)

    before = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)
