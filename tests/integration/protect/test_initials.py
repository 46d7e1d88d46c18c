"""The `initials` operator: the worked example of CONTRIBUTING.md (one class, one test file)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from securepipe.access.policy import parse_treatment
from securepipe.config import ColumnConfig
from securepipe.errors import ConfigError
from securepipe.protect.base import ColumnContext
from securepipe.protect.registry import get_operator, validate_protection

pytestmark = pytest.mark.spark


def _column(op: str = "initials") -> ColumnConfig:
    return ColumnConfig.model_validate(
        {"type": "string", "classification": "pii", "protect": {"op": op}}
    )


def test_initials_keep_the_first_letter_of_each_word(spark) -> None:
    rows = [("ada lovelace",), ("  Grace   Brewster Hopper ",), ("",), (None,)]
    df = spark.createDataFrame(rows, "name string")
    op = get_operator("initials")
    expr = op.build(F.col("name"), ColumnContext("people", "name", _column(), None))
    assert expr is not None
    got = [r[0] for r in df.select(expr).collect()]
    assert got == ["A. L.", "G. B. H.", "", None]


def test_initials_is_a_mask_that_cannot_be_reversed_and_outlives_nothing_in_clear() -> None:
    op = get_operator("initials")
    assert not op.is_reversible({}) and not op.per_subject and not op.joinable
    assert op.erasure_class({}) == "masked"  # a derived value in clear until VACUUM
    treatment = parse_treatment("mask:initials")
    assert (treatment.kind, treatment.mask_op, treatment.mask_params) == ("mask", "initials", {})


def test_initials_takes_no_parameters() -> None:
    bad = ColumnConfig.model_validate(
        {"type": "string", "classification": "pii", "protect": {"op": "initials", "keep": 2}}
    )
    with pytest.raises(ConfigError, match=r"people\.name: operator 'initials' has no param"):
        validate_protection(bad, {}, "people.name")
