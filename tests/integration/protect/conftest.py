"""The operators run with Spark's code generation as in production: the rest of the suite runs
with `spark.sql.codegen.factoryMode=NO_CODEGEN` (tests/conftest.py, for speed), so these modules
turn it back to Spark's default for their own tests (it is a session setting)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

_KEY = "spark.sql.codegen.factoryMode"


@pytest.fixture(autouse=True, scope="module")
def with_codegen(spark) -> Iterator[None]:
    before = spark.conf.get(_KEY, None)
    spark.conf.set(_KEY, "FALLBACK")  # Spark's default: generated code, interpreted on failure
    assert spark.conf.get(_KEY) == "FALLBACK"
    try:
        yield
    finally:
        if before is None:
            spark.conf.unset(_KEY)
        else:
            spark.conf.set(_KEY, before)
