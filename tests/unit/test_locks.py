"""File locks that die with their holder: the lakehouse lock and the per-date run lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from securepipe.errors import ConfigError
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
    with pytest.raises(ConfigError, match="an object-store lakehouse needs lock_dir"):
        _ = Layout("s3a://bucket/lh", "s3a://bucket/landing").lakehouse_lock
    pinned = Layout("s3a://bucket/lh", "s3a://bucket/landing", str(tmp_path)).lakehouse_lock
    assert pinned.parent == tmp_path
    # Two lakehouses on the same scheduler host never share a lock file.
    other = Layout("s3a://bucket/other", "s3a://bucket/landing", str(tmp_path)).lakehouse_lock
    assert other != pinned


def test_an_object_store_lakehouse_locks_beside_its_config_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from securepipe.config import load_config
    from tests.builders import CONF

    locks = []
    for cwd in (tmp_path / "a", tmp_path / "b"):
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        cfg = load_config(CONF, lakehouse="s3a://bucket/lh")
        locks.append((Layout.of(cfg).lakehouse_lock, Layout.of(cfg).locks))
    assert locks[0] == locks[1]
    assert locks[0][0].parent == CONF.parent / ".cache" / "locks"
    # A local lakehouse keeps its locks beside it.
    local = load_config(CONF, lakehouse=str(tmp_path / "lh"))
    assert Layout.of(local).locks == str(tmp_path / "lh" / "_locks")


def test_a_thread_holding_the_lock_exclusively_takes_it_again_and_others_still_wait(
    tmp_path: Path,
) -> None:
    import threading

    lock = tmp_path / "lakehouse.lock"
    with file_lock(lock, exclusive=True, what="erase", reentrant=True):
        # The job inside the command takes the command's lock again, as a library call does.
        with (
            file_lock(lock, exclusive=False, reentrant=True),
            file_lock(lock, exclusive=True, what="inner", reentrant=True),
        ):
            pass
        # Still held when the inner holds end: another thread and another process wait.
        refused: list[str] = []

        def other() -> None:
            try:
                with file_lock(lock, exclusive=False, wait=0.3, reentrant=True):
                    pass
            except LockTimeout as exc:
                refused.append(str(exc))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(refused) == 1 and "(erase since" in refused[0]
        probe = subprocess.run(
            [sys.executable, "-c", HOLD, str(lock), "sh", "0"], capture_output=True, timeout=60
        )
        assert probe.returncode != 0 and b"RunLocked" in probe.stderr
    # A shared hold is no licence for an exclusive one, even in the same thread; nor is a hold
    # that is not reentrant (a run lock: a second run of a date is refused, same thread or not).
    for outer_exclusive, outer_reentrant in ((False, True), (True, False)):
        with (
            file_lock(lock, exclusive=outer_exclusive, reentrant=outer_reentrant),
            pytest.raises(RunLocked),
            file_lock(lock, exclusive=True, reentrant=True),
        ):
            pass
    with file_lock(lock, exclusive=True):  # released: free for anyone
        pass


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("erase", {"subjects": "ids.txt", "reason": None, "json": False}),
        ("maintain", {"retain_hours": None, "allow_below_safety": False}),
        ("reencrypt", {"table": "customers"}),
    ],
)
def test_exclusive_commands_wait_for_the_lock_before_starting_spark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, extra: dict[str, object]
) -> None:
    import argparse

    from securepipe.cli import erasure, ops
    from tests.builders import load_cfg, write_config

    config = write_config(tmp_path)
    (tmp_path / "ids.txt").write_text("C000000001\n")
    started: list[str] = []

    def no_spark(loaded: object) -> object:
        started.append(command)
        raise AssertionError("Spark started before the lock was taken")

    handler = {
        "erase": erasure.erase_command,
        "maintain": ops.maintain,
        "reencrypt": ops.reencrypt_command,
    }[command]
    # Wherever the command would open its session from.
    monkeypatch.setattr("securepipe.cli.session.spark_session", no_spark)
    monkeypatch.setattr(f"{handler.__module__}.spark_session", no_spark, raising=False)
    monkeypatch.setenv("SECUREPIPE_LOCK_WAIT", "0.5")
    monkeypatch.chdir(tmp_path)
    holder = _holder(Layout.of(load_cfg(config)).lakehouse_lock, "sh")  # a running night
    try:
        with pytest.raises(LockTimeout, match=r"waited 0 s for .*lakehouse\.lock"):
            handler(argparse.Namespace(config=str(config), **extra))
    finally:
        holder.kill()
        holder.wait()
    assert started == []


def test_a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    link = tmp_path / "locks" / "lakehouse.lock"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="is a symbolic link"), file_lock(link, exclusive=True):
        pass
    assert target.read_text() == "keep me\n"
