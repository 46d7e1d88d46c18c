"""Every log line of a job says which job, run, date and table it belongs to."""

from __future__ import annotations

import json
import logging

import pytest

from securepipe.logs import ContextFilter, JsonLines, current_context, log_context


def _line(logger: logging.Logger, message: str, **extra: object) -> dict[str, object]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(ContextFilter())
    logger.addHandler(handler)
    try:
        logger.warning(message, extra=extra or None)
    finally:
        logger.removeHandler(handler)
    return dict(json.loads(JsonLines().format(records[0])))


def test_a_line_carries_the_run_and_the_table_of_its_block() -> None:
    logger = logging.getLogger("securepipe.test")
    with log_context(job="nightly", run_id="r1", run_date="2026-10-01"):
        run_line = _line(logger, "reading")
        with log_context(table="customers"):
            table_line = _line(logger, "gate done", stage="gate", seconds=1.5)
        after = _line(logger, "report")
    assert run_line["run_id"] == "r1" and run_line["run_date"] == "2026-10-01"
    assert "table" not in run_line
    assert table_line["table"] == "customers" and table_line["job"] == "nightly"
    assert table_line["stage"] == "gate" and table_line["seconds"] == 1.5
    assert "table" not in after and after["run_id"] == "r1"
    assert current_context() == {}
    assert "run_id" not in _line(logger, "outside any job")


def test_a_library_line_is_stamped_too() -> None:
    with log_context(job="nightly", run_id="r2", run_date="2026-10-02", table="transactions"):
        line = _line(logging.getLogger("py4j.clientserver"), "connection lost")
    assert (line["logger"], line["run_id"], line["table"]) == (
        "py4j.clientserver",
        "r2",
        "transactions",
    )


def test_an_explicit_table_wins_over_the_context() -> None:
    with log_context(table="customers"):
        line = _line(logging.getLogger("securepipe.test"), "x", table="transactions")
    assert line["table"] == "transactions"


def test_unknown_context_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="user"), log_context(user="someone"):
        pass
