"""Synthetic landing data: valid Luhn digits, planted malformed rows, reproducible."""

from __future__ import annotations

import csv
from pathlib import Path

from securepipe.io.generate import (
    CUSTOMER_COLUMNS,
    TRANSACTION_COLUMNS,
    generate_landing,
    luhn_valid,
)


def test_luhn_reference_numbers() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_batch_has_valid_cards_and_planted_rows(tmp_path: Path) -> None:
    batches = generate_landing(tmp_path, "2026-01-02", rows=300, seed=7)
    assert {b.rows for b in batches.values()} == {304}
    with batches["customers"].path.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CUSTOMER_COLUMNS
    good = rows[1:301]
    assert all(luhn_valid(r[10]) and len(r[10]) == 16 for r in good)
    assert len({r[0] for r in good}) == 300
    planted = rows[301:]
    assert any(len(r) != len(CUSTOMER_COLUMNS) for r in planted)
    assert any(r[0] == "" for r in planted)
    with batches["transactions"].path.open(encoding="utf-8") as fh:
        txns = list(csv.reader(fh))
    assert tuple(txns[0]) == TRANSACTION_COLUMNS
    assert any(len(r) != len(TRANSACTION_COLUMNS) for r in txns[301:])


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = generate_landing(tmp_path / "a", "2026-01-02", rows=50, seed=3)
    b = generate_landing(tmp_path / "b", "2026-01-02", rows=50, seed=3)
    assert a["customers"].path.read_bytes() == b["customers"].path.read_bytes()
