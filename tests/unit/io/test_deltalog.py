"""Which locations the read-only commands answer from the Delta log without a JVM."""

from __future__ import annotations

import pytest

from securepipe.errors import PublishError
from securepipe.io.deltalog import audit_rows, local_table, log_history


def test_local_locations_are_read_without_spark_and_object_stores_are_not() -> None:
    assert local_table("/lake/tables/customers") == "/lake/tables/customers"
    assert local_table("file:/lake/tables/customers") == "/lake/tables/customers"
    assert local_table("file:///lake/tables/customers") == "/lake/tables/customers"
    assert local_table("s3a://bucket/lake/tables/customers") is None


def test_a_folder_that_is_no_delta_table_is_named(tmp_path) -> None:
    with pytest.raises(PublishError, match=f"{tmp_path} is not a Delta table"):
        log_history(str(tmp_path))
    with pytest.raises(PublishError, match="is not a Delta table"):
        audit_rows(str(tmp_path / "missing"), 10)
