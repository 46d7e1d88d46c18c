"""Synthetic landing data: customers and transactions with planted malformed rows.

Everything is fake (faker pools, reserved e-mail domains, 555 phone exchanges, SSN areas never
issued as a group); a fixed seed makes a batch reproducible. Rows are built with numpy in chunks,
so 4,000,000 rows take seconds per column rather than a faker call per value.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from faker import Faker

__all__ = [
    "CUSTOMER_COLUMNS",
    "TRANSACTION_COLUMNS",
    "LandingBatch",
    "generate_landing",
    "luhn_valid",
]

CUSTOMER_COLUMNS = (
    "customer_id",
    "full_name",
    "email",
    "phone",
    "ssn",
    "date_of_birth",
    "street_address",
    "city",
    "country",
    "region",
    "card_number",
    "balance",
    "signup_ts",
)
TRANSACTION_COLUMNS = (
    "txn_id",
    "customer_id",
    "card_number",
    "amount",
    "currency",
    "merchant",
    "ts",
)
_COUNTRIES = (
    ("DE", "EU"),
    ("FR", "EU"),
    ("ES", "EU"),
    ("IT", "EU"),
    ("NL", "EU"),
    ("IE", "EU"),
    ("US", "NA"),
    ("CA", "NA"),
    ("JP", "APAC"),
    ("AU", "APAC"),
    ("SG", "APAC"),
)
_CURRENCY = {"EU": "EUR", "NA": "USD", "APAC": "JPY"}
_LOCALES = ["en_US", "de_DE", "fr_FR", "es_ES", "it_IT", "ja_JP"]
_CHUNK = 500_000


@dataclass(frozen=True)
class LandingBatch:
    """What the generator wrote for one table: files, total rows and planted malformed rows."""

    table: str
    path: Path
    rows: int
    malformed: int


def luhn_valid(number: str) -> bool:
    """True if the digit string passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _luhn_cards(rng: np.random.Generator, n: int) -> np.ndarray:
    body = rng.integers(0, 10, size=(n, 15), dtype=np.int64)
    body[:, 0] = 4  # a Visa-like prefix
    # Luhn over the 15-digit body: double every second digit counting from the right of the body.
    doubled = body.copy()
    doubled[:, -1::-2] *= 2
    doubled[doubled > 9] -= 9
    check = (10 - doubled.sum(axis=1) % 10) % 10
    digits = np.concatenate([body, check[:, None]], axis=1).astype("U1")
    return np.array(["".join(row) for row in digits])


def _pools(seed: int) -> dict[str, np.ndarray]:
    fake = Faker(_LOCALES)
    fake.seed_instance(seed)
    Faker.seed(seed)
    return {
        "name": np.array([fake.name() for _ in range(3000)]),
        "user": np.array([fake.unique.user_name() for _ in range(3000)]),
        "street": np.array([fake.street_address().replace("\n", " ") for _ in range(3000)]),
        "city": np.array([fake.city() for _ in range(500)]),
        "merchant": np.array([fake.company() for _ in range(500)]),
    }


def _zfill(values: np.ndarray, width: int) -> pd.Series:
    return pd.Series(values).astype(str).str.zfill(width)


def _dates(rng: np.random.Generator, n: int, start: str, end: str) -> pd.Series:
    lo, hi = np.datetime64(start, "D"), np.datetime64(end, "D")
    days = rng.integers(0, int((hi - lo).astype(int)), size=n)
    return pd.Series((lo + days).astype(str))


def _timestamps(rng: np.random.Generator, n: int, start: str, end: str) -> pd.Series:
    lo, hi = np.datetime64(start, "s"), np.datetime64(end, "s")
    secs = rng.integers(0, int((hi - lo).astype(int)), size=n)
    return pd.Series((lo + secs).astype(str)).str.replace("T", " ", regex=False)


def _customers_chunk(
    rng: np.random.Generator, pools: dict[str, np.ndarray], lo: int, hi: int
) -> pd.DataFrame:
    n = hi - lo
    ids = np.arange(lo, hi)
    country_idx = rng.integers(0, len(_COUNTRIES), size=n)
    countries = np.array([c for c, _ in _COUNTRIES])[country_idx]
    regions = np.array([r for _, r in _COUNTRIES])[country_idx]
    area = rng.integers(1, 666, size=n)
    ssn = (
        _zfill(area, 3)
        + "-"
        + _zfill(rng.integers(1, 100, size=n), 2)
        + "-"
        + _zfill(rng.integers(1, 10000, size=n), 4)
    )
    phone = (
        "+1-"
        + _zfill(rng.integers(201, 990, size=n), 3)
        + "-555-"
        + _zfill(rng.integers(0, 10000, size=n), 4)
    )
    domains = np.array(["example.com", "example.org", "example.net"])
    email = (
        pd.Series(pools["user"][rng.integers(0, len(pools["user"]), size=n)])
        + "."
        + pd.Series(ids).astype(str)
        + "@"
        + pd.Series(domains[rng.integers(0, 3, size=n)])
    )
    balance = pd.Series(rng.integers(-50_000, 5_000_000, size=n) / 100).map("{:.2f}".format)
    return pd.DataFrame(
        {
            "customer_id": "C" + _zfill(ids, 9),
            "full_name": pools["name"][rng.integers(0, len(pools["name"]), size=n)],
            "email": email,
            "phone": phone,
            "ssn": ssn,
            "date_of_birth": _dates(rng, n, "1940-01-01", "2006-01-01"),
            "street_address": pools["street"][rng.integers(0, len(pools["street"]), size=n)],
            "city": pools["city"][rng.integers(0, len(pools["city"]), size=n)],
            "country": countries,
            "region": regions,
            "card_number": _luhn_cards(rng, n),
            "balance": balance,
            "signup_ts": _timestamps(rng, n, "2015-01-01", "2026-01-01"),
        }
    )


def _transactions_chunk(
    rng: np.random.Generator, pools: dict[str, np.ndarray], lo: int, hi: int, customers: int
) -> pd.DataFrame:
    n = hi - lo
    cust = rng.integers(0, max(customers, 1), size=n)
    currency = np.array(list(_CURRENCY.values()))[rng.integers(0, 3, size=n)]
    return pd.DataFrame(
        {
            "txn_id": "T" + _zfill(np.arange(lo, hi), 10),
            "customer_id": "C" + _zfill(cust, 9),
            "card_number": _luhn_cards(rng, n),
            "amount": pd.Series(rng.integers(1, 1_000_000, size=n) / 100).map("{:.2f}".format),
            "currency": currency,
            "merchant": pools["merchant"][rng.integers(0, len(pools["merchant"]), size=n)],
            "ts": _timestamps(rng, n, "2026-01-01", "2026-11-01"),
        }
    )


def _malformed_customers(base: pd.DataFrame) -> list[list[str]]:
    """Four rows that each break one rule: bad date, missing key, non-numeric, column count."""
    rows = [list(map(str, r)) for r in base.head(4).itertuples(index=False)]
    rows[0][5] = "1985-13-45"  # date_of_birth
    rows[1][0] = ""  # customer_id
    rows[2][11] = "12,3x"  # balance
    rows[3] = [*rows[3], "unexpected-extra-field"]
    return rows


def _malformed_transactions(base: pd.DataFrame) -> list[list[str]]:
    rows = [list(map(str, r)) for r in base.head(4).itertuples(index=False)]
    rows[0][3] = "ten euros"  # amount
    rows[1][0] = ""  # txn_id
    rows[2][6] = "yesterday"  # ts
    rows[3] = rows[3][:4]  # wrong column count
    return rows


def _write(path: Path, columns: tuple[str, ...], chunks, malformed_of) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    first: pd.DataFrame | None = None
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for chunk in chunks:
            if first is None:
                first = chunk.head(4).copy()
            chunk.to_csv(fh, header=False, index=False, lineterminator="\n")
            rows += len(chunk)
        bad = malformed_of(first if first is not None else pd.DataFrame(columns=columns))
        # Suffix the ids of the planted rows so that they never collide with valid ones.
        for row in bad:
            if row and row[0]:
                row[0] = row[0] + "X"
        writer.writerows(bad)
    return rows + len(bad), len(bad)


def generate_landing(
    landing: str | Path, run_date: date | str, rows: int = 10_000, seed: int = 42
) -> dict[str, LandingBatch]:
    """Write one run date of `customers` and `transactions` CSV files under `landing`.

    Args:
        landing: landing root; files go to `<landing>/<table>/<run_date>/part-0000.csv`.
        run_date: the batch date.
        rows: valid rows per table (4 malformed rows are added to each).
        seed: random seed; the same seed gives the same files.

    Returns:
        One `LandingBatch` per table.
    """
    if rows < 4:
        raise ValueError("rows must be at least 4")
    run_date = str(run_date)
    root = Path(landing)
    pools = _pools(seed)
    out = {}
    rng = np.random.default_rng(seed)
    cust_path = root / "customers" / run_date / "part-0000.csv"
    cust_chunks = (
        _customers_chunk(rng, pools, lo, min(lo + _CHUNK, rows)) for lo in range(0, rows, _CHUNK)
    )
    total, bad = _write(cust_path, CUSTOMER_COLUMNS, cust_chunks, _malformed_customers)
    out["customers"] = LandingBatch("customers", cust_path, total, bad)
    rng = np.random.default_rng(seed + 1)
    txn_path = root / "transactions" / run_date / "part-0000.csv"
    txn_chunks = (
        _transactions_chunk(rng, pools, lo, min(lo + _CHUNK, rows), rows)
        for lo in range(0, rows, _CHUNK)
    )
    total, bad = _write(txn_path, TRANSACTION_COLUMNS, txn_chunks, _malformed_transactions)
    out["transactions"] = LandingBatch("transactions", txn_path, total, bad)
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m securepipe.io.generate --landing DIR --date D --rows N`."""
    parser = argparse.ArgumentParser(prog="python -m securepipe.io.generate")
    parser.add_argument("--landing", default="./landing")
    parser.add_argument("--date", required=True)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    for batch in generate_landing(args.landing, args.date, args.rows, args.seed).values():
        print(f"{batch.table}: {batch.rows} rows ({batch.malformed} malformed) -> {batch.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
