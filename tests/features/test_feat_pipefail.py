"""No early-exit reader after a pipe under pipefail.

`producer | head -n1` and `producer | grep -q x` stop reading at the first match; when the producer writes again it is
killed by SIGPIPE (141), and pipefail makes the whole pipeline fail: in `x="$(... | head -n1)"` errexit ends the
script, in `if ... | grep -q` the condition turns false. It depends on timing and output size (vllm.sh's
`default=$(... | head -n1)` failed about 1% of the time). The scripts read everything (phx_first_line, a variable and
a here-string) instead; this test scans images/ so the pattern does not come back."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import IMAGES, LIB, all_scripts

# a pipe (not ||) into head, or into grep/egrep/fgrep with -q/--quiet/--silent/-m/--max-count, or into sed ending
# with q, or into awk that exits
EARLY_EXIT = re.compile(
    r"(?<![|])\|(?![|])\s*(?:"
    r"head\b"
    r"|[ef]?grep\b(?:(?:\s+-[A-Za-z]+)*\s+-[A-Za-z]*[qm]|[^|;&]*\s--(?:quiet|silent|max-count)\b)"
    r"|sed\b[^|]*[;{'\s][0-9]*q\b"
    r"|awk\b[^|]*\bexit\b"
    r")"
)


def code_lines(text: str) -> list[tuple[int, str]]:
    """Lines without comments, continuation lines joined (numbered by their first line)."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw if not raw.lstrip().startswith("#") else ""
        line = re.sub(r"\s+#\s.*$", "", line)
        if not pending:
            start = n
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def hazards(text: str) -> list[str]:
    return [f"{n}: {line.strip()}" for n, line in code_lines(text) if EARLY_EXIT.search(line)]


@pytest.mark.parametrize("line", [
    'default="$(vllm_cuda_variants "$version" | head -n1)"',
    "    locale -a 2>/dev/null | grep -qxF \"$want\"",
    "if ! id -nG \"$user\" | tr ' ' '\\n' | grep -qxF docker; then",
    "x=$(nvidia-smi | grep -m1 Version)",
    "x=$(nvidia-smi | grep -x -q Version)",
    "printf x | egrep --quiet y",
    "cat f | sed -n '/x/{p;q}'",
    "cat f | awk '/x/ {print; exit}'",
    "a | \\\n    head -n1",
])
def test_the_scan_sees_the_pattern(line):
    assert hazards(line)


@pytest.mark.parametrize("line", [
    'grep -qxF "$want" <<<"$all"',
    "phx_log x || grep -q y file",
    "locale -a | sort",
    "nvidia-smi | phx_first_line",
    "# a comment: cmd | head -n1",
    "sed -nE 's/x/y/p' | sort -uV",
])
def test_the_scan_leaves_safe_lines(line):
    assert hazards(line) == []


def test_the_hazard_is_real():
    """The premise: a producer that writes after the reader left fails the pipeline with 141 under pipefail."""
    r = subprocess.run(["bash", "-c", "set -o pipefail; seq 1 200000 | head -n1 >/dev/null; echo $?"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "141"


@pytest.mark.parametrize("script", all_scripts(), ids=lambda p: p.relative_to(IMAGES).as_posix())
def test_no_early_exit_reader_after_a_pipe(script):
    assert hazards(script.read_text()) == []


def test_phx_first_line_reads_everything():
    r = subprocess.run(["bash", "-c", f'source "{LIB}"; seq 1 200000 | phx_first_line; echo "rc=$?"; '
                                      'phx_first_line </dev/null; echo "empty rc=$?"'],
                       capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PHOENIX_FEATURE": "t"})
    assert r.stdout.splitlines() == ["1", "rc=0", "empty rc=0"]
