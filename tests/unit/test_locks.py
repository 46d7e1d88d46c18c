"""File locks that die with their holder: the lakehouse lock and the per-date run lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from securepipe.layout import Layout
from securepipe.locks import LockTimeout, RunLocked, file_lock, run_lock

HOLD = """
import sys, time
from securepipe.locks import file_lock
with file_lock(sys.argv[1], exclusive=sys.argv[2] == "ex", what="holder"):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _holder(path: Path, mode: str, seconds: float = 60) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), mode, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_exclusive_holder_is_named_and_blocks_others(tmp_path: Path) -> None:
    lock = tmp_path / "lakehouse.lock"
    proc = _holder(lock, "ex")
    try:
        with (
            pytest.raises(RunLocked, match=rf"another run holds {lock} \(pid {proc.pid} "),
            file_lock(lock, exclusive=False),
        ):
            pass
        with (
            pytest.raises(LockTimeout, match=r"waited 1 s .*holder"),
            file_lock(lock, exclusive=True, wait=1),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    lock = tmp_path / "nightly-2026-11-28.lock"
    proc = _holder(lock, "ex")
    proc.kill()  # SIGKILL: no cleanup code runs
    proc.wait()
    with run_lock(tmp_path, "nightly-2026-11-28"):
        pass


def test_shared_holders_overlap_and_an_exclusive_one_waits_for_them(tmp_path: Path) -> None:
    lock = tmp_path / "lakehouse.lock"
    proc = _holder(lock, "sh", seconds=2)
    try:
        with file_lock(lock, exclusive=False):  # two nights at once
            pass
        started = time.monotonic()
        with file_lock(lock, exclusive=True, wait=30):  # erase waits for the night to end
            waited = time.monotonic() - started
        assert waited > 0.5  # the holder kept its shared lock for 2 s after printing
    finally:
        proc.kill()
        proc.wait()


def test_lakehouse_lock_lives_beside_a_local_lakehouse_and_on_the_host_for_s3(
    tmp_path: Path,
) -> None:
    local = Layout(str(tmp_path / "lh"), str(tmp_path / "landing")).lakehouse_lock
    assert local == tmp_path / "lh" / "_locks" / "lakehouse.lock"
    s3 = Layout("s3a://bucket/lh", "s3a://bucket/landing").lakehouse_lock
    assert s3.parent == Path(".cache/locks").resolve() and s3.name.startswith("lakehouse-")
    pinned = Layout("s3a://bucket/lh", "s3a://bucket/landing", str(tmp_path)).lakehouse_lock
    assert pinned.parent == tmp_path
    # Two lakehouses on the same scheduler host never share a lock file.
    other = Layout("s3a://bucket/other", "s3a://bucket/landing", str(tmp_path)).lakehouse_lock
    assert other != pinned
