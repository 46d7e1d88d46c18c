"""The command line's one voice: --version, and --json also when the command fails."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from securepipe import __version__
from securepipe.cli import _parser, main


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


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_option_of_every_command_has_help() -> None:
    parser = _parser()
    commands = _subparsers(parser)
    assert {"run", "demo", "keys", "erase", "history", "audit", "access"} <= set(commands)
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, command in commands.items()
        for action in command._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []


def test_help_lists_the_exit_codes_and_the_environment(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out and "2  a compliance gate refused" in out
    named = set(re.findall(r"SECUREPIPE_[A-Z0-9_]+", out))
    used = set()
    for path in (Path(__file__).resolve().parents[2] / "src" / "securepipe").rglob("*.py"):
        used |= set(re.findall(r"SECUREPIPE_[A-Z0-9_]+", path.read_text()))
    assert used <= named, used - named


def test_every_command_names_a_handler_that_resolves() -> None:
    """Handlers are named as strings (lazy imports): a misspelt one would fail only when its
    command runs; here every command's handler is imported and is a function."""
    from securepipe.cli.commands import resolve

    for name, command in _subparsers(_parser()).items():
        handler = command.get_default("handler")
        assert isinstance(handler, str) and ":" in handler, name
        assert callable(resolve(handler)), f"{name}: {handler}"
