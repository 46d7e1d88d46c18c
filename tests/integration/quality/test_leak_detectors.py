"""The leak scan's breadth: common ways of writing PII are caught, common look-alikes are not.

All values are evaluated in one Spark pass per module (a fixture); each case is its own test so a
regression names the format it lost.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from securepipe.config import ColumnConfig, ComplianceConfig, TableConfig
from securepipe.quality.builtin import detectors, leak_scan_exprs, matches

pytestmark = pytest.mark.spark

PLANTED = [
    ("123-45-6789", "us_ssn"),
    ("123 45 6789", "us_ssn"),
    ("123.45.6789", "us_ssn"),
    ("ssn_123-45-6789", "us_ssn"),
    ("SSN:123 45 6789;", "us_ssn"),
    ("id123-45-6789x", "us_ssn"),
    ("+14155552671", "phone"),
    ("(415)555-2671", "phone"),
    ("(415) 555-2671", "phone"),
    ("415-555-2671", "phone"),
    ("415.555.2671", "phone"),
    ("call 415 555 2671 today", "phone"),
    ("+44 20 7946 0958", "phone"),
    ("+1 (415) 555-2671", "phone"),
    ("+33 1 23 45 67 89", "phone"),
    ("tel:+4930123456", "phone"),
    ("+49-30-1234-5678", "phone"),
    ("4111111111111111", "card_number"),
    ("4111 1111 1111 1111", "card_number"),
    ("4111-1111-1111-1111", "card_number"),
    ("4111.1111.1111.1111", "card_number"),
    ("card4111111111111111", "card_number"),
    ("3782 822463 10005", "card_number"),
    ("5555555555554444", "card_number"),
    ("DE89 3704 0044 0532 0130 00", "iban"),
    ("DE89370400440532013000", "iban"),
    ("de89 3704 0044 0532 0130 00", "iban"),
    ("gb82west12345698765432", "iban"),
    ("GB82 WEST 1234 5698 7654 32", "iban"),
    ("FR14 2004 1010 0505 0001 3M02 606", "iban"),
    ("iban: NL91ABNA0417164300.", "iban"),
    ("ada.lovelace@example.com", "email"),
    ("Mail: A.B+tag@sub.example.co.uk", "email"),
]

LOOK_ALIKES = [
    "ORD-2026-000123",
    "order 20261128-0042",
    "2026-11-28",
    "2026-11-28T23:59:59Z",
    "28.11.2026",
    "11/28/2026",
    "23:59:59.123",
    "550e8400-e29b-41d4-a716-446655440000",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "1234.56",
    "-100000.00",
    "10000000.00",
    "EUR 1,234,567.89",
    "4111 1111 1111 1112",
    "4111111111111112",
    "DE89 3704 0044 0532 0130 01",
    "GB00WEST12345698765432",
    "000-12-3456",
    "666-12-3456",
    "912-34-5678",
    "123-00-4567",
    "123-45-0000",
    "123-45 6789",
    "***-**-6789",
    "C000001234",
    "TXN-000000123456",
    "v1.2.3",
    "192.168.100.200",
    "version 10.0.19045.3693",
    "ISBN 978-3-16-148410-0",
    "Köln",
    "No. 12",
    "PO Box 1234",
    "SKU 12-3456-789",
    "+100",
]


@pytest.fixture(scope="module")
def verdicts(spark):
    values = [v for v, _ in PLANTED] + LOOK_ALIKES
    df = spark.createDataFrame([(v,) for v in values], "v string")
    active = detectors(ComplianceConfig())
    rows = df.select(
        "v",
        *[
            F.coalesce(matches(F.col("v"), det), F.lit(False)).alias(name)
            for name, det in active.items()
        ],
    ).collect()
    return {r["v"]: {name for name in active if r[name]} for r in rows}


@pytest.mark.parametrize(("value", "detector"), PLANTED, ids=[v for v, _ in PLANTED])
def test_planted_pii_is_caught_by_its_detector(verdicts, value: str, detector: str) -> None:
    assert detector in verdicts[value], verdicts[value]


@pytest.mark.parametrize("value", LOOK_ALIKES)
def test_look_alike_does_not_trip_the_scan(verdicts, value: str) -> None:
    assert verdicts[value] == set()


def _table(**columns: ColumnConfig) -> TableConfig:
    return TableConfig.model_validate(
        {
            "source": {"path": "x/{run_date}"},
            "key": "id",
            "quarantine_key": "q",
            "columns": {
                "id": {"type": "string", "classification": "identifier", "protect": {"op": "keep"}},
                **{k: v.model_dump() for k, v in columns.items()},
            },
        }
    )


def test_numeric_columns_that_are_not_public_are_scanned_for_ssn_and_cards(spark) -> None:
    def kept(type_: str, classification: str) -> ColumnConfig:
        return ColumnConfig.model_validate(
            {"type": type_, "classification": classification, "protect": {"op": "keep"}}
        )

    table = _table(
        legacy_no=kept("long", "confidential"),
        card_no=kept("decimal(19,0)", "internal"),
        amount=kept("long", "confidential"),
        count=kept("long", "public"),
    )
    df = spark.createDataFrame(
        [("a", 123456789, Decimal(4111111111111111), 123000000, 123456789)],
        "id string, legacy_no long, card_no decimal(19,0), amount long, count long",
    )
    exprs = leak_scan_exprs(df, table, ComplianceConfig())
    row = df.agg(*[e.alias(k.replace(":", "__")) for k, e in exprs.items()]).first()
    assert row is not None
    hits = {k for k in exprs if row[k.replace(":", "__")]}
    # An SSN stored as a number and a card number stored as a decimal are both caught; an
    # amount with a zero group is not an SSN; a public count is not scanned at all.
    assert hits == {"leak:legacy_no:us_ssn", "leak:card_no:card_number"}
    assert not any(k.startswith("leak:count:") for k in exprs)


def test_a_card_number_shifted_into_a_money_column_is_caught(spark) -> None:
    # decimal(18,2) prints `4111111111111111.00`: the whole-value patterns missed it.
    table = _table(
        balance=ColumnConfig.model_validate(
            {"type": "decimal(18,2)", "classification": "confidential", "protect": {"op": "keep"}}
        )
    )
    schema = "id string, balance decimal(18,2)"
    planted = [("a", Decimal("4111111111111111.00")), ("b", Decimal("41111111111111.11"))]
    honest = [("c", Decimal("1234567.89")), ("d", Decimal("-50000.00")), ("e", Decimal("0.07"))]
    for rows, expected in ((planted, 2), (honest, 0)):
        df = spark.createDataFrame(rows, schema)
        exprs = leak_scan_exprs(df, table, ComplianceConfig())
        row = df.agg(*[e.alias(k.replace(":", "__")) for k, e in exprs.items()]).first()
        assert row is not None
        assert sum(int(row[k.replace(":", "__")]) for k in exprs) == expected, rows


def test_strict_detectors_catch_bare_digits_only_when_asked(spark) -> None:
    values = ["123456789", "ssn 123456789.", "4155552671", "000123456", "1234567890", "12345678"]
    df = spark.createDataFrame([(v,) for v in values], "v string")

    def hits(compliance: ComplianceConfig) -> dict[str, set[str]]:
        active = detectors(compliance)
        rows = df.select(
            "v",
            *[F.coalesce(matches(F.col("v"), d), F.lit(False)).alias(n) for n, d in active.items()],
        ).collect()
        return {r["v"]: {n for n in active if r[n]} for r in rows}

    default, strict = hits(ComplianceConfig()), hits(ComplianceConfig(strict=True))
    assert all(found == set() for found in default.values()), default
    assert strict["123456789"] == {"bare_ssn"} and strict["ssn 123456789."] == {"bare_ssn"}
    assert strict["4155552671"] == {"bare_phone"}
    # An SSN area of 000, an exchange starting with 1 or 4, eight digits: not matched.
    assert strict["000123456"] == strict["1234567890"] == strict["12345678"] == set()
