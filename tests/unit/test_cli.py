"""The command line's one voice: --version, and --json also when the command fails."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from securepipe import __version__
from securepipe.cli import main


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"securepipe {__version__}"


def test_json_output_reports_a_failure_too(tmp_path: Path, capsys) -> None:
    absent = tmp_path / "absent.yaml"
    code = main(["run", "--json", "--config", str(absent), "--date", "2026-11-28"])
    out, err = capsys.readouterr()
    assert code == 1
    doc = json.loads(out)
    assert doc["status"] == "error" and doc["exit_code"] == 1
    assert str(absent) in doc["error"]
    assert err.startswith("securepipe: error: ")  # the one line on stderr stays


def test_without_json_a_failure_prints_nothing_on_stdout(tmp_path: Path, capsys) -> None:
    code = main(["run", "--config", str(tmp_path / "absent.yaml"), "--date", "2026-11-28"])
    assert code == 1 and capsys.readouterr().out == ""
