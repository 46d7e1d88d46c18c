"""`examples/cron/securepipe.cron` as cron reads it: five valid schedule fields per entry, every
`%` escaped (cron turns a bare one into a newline), and each securepipe command one that our
parser accepts, with the date the shell expression gives."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from securepipe.cli import _parser
from tests.builders import ROOT

CRON = ROOT / "examples" / "cron" / "securepipe.cron"
_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]


def _entries() -> list[tuple[list[str], str]]:
    out = []
    for line in CRON.read_text().splitlines():
        if not line.strip() or line.startswith("#") or re.match(r"^[A-Z_]+=", line):
            continue
        fields = line.split(None, 5)
        out.append((fields[:5], fields[5]))
    return out


def _valid(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and not step.isdigit():
            return False
        if base == "*":
            continue
        bounds = base.split("-")
        if not all(b.isdigit() and low <= int(b) <= high for b in bounds) or len(bounds) > 2:
            return False
    return True


def test_the_example_has_a_nightly_and_a_weekly_entry() -> None:
    entries = _entries()
    assert [" ".join(s) for s, _ in entries] == ["30 2 * * *", "0 5 * * 0"]
    for schedule, _ in entries:
        assert all(_valid(f, lo, hi) for f, (lo, hi) in zip(schedule, _RANGES, strict=True))


def test_every_percent_is_escaped_for_cron() -> None:
    for _, command in _entries():
        assert not re.search(r"(?<!\\)%", command), command


def test_each_command_is_one_securepipe_accepts() -> None:
    for _, command in _entries():
        as_run = command.replace("\\%", "%")  # what cron hands to the shell
        invocation = as_run.split("&&", 1)[1].split(">>", 1)[0]
        # The shell's own date for `$(date -d yesterday +%F)`, as the shell would expand it.
        for expr in re.findall(r"\$\((date [^)]*)\)", invocation):
            day = subprocess.run(
                ["bash", "-c", expr], capture_output=True, text=True, check=True
            ).stdout.strip()
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", day)
            invocation = invocation.replace(f"$({expr})", day)
        argv = shlex.split(invocation)
        assert Path(argv[0]).name == "securepipe"
        args = _parser().parse_args(argv[1:])
        assert args.handler in ("run:run", "ops:maintain")
        if args.command == "run":
            assert args.date and re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.date)
