"""The standard benchmark workload, derived from the shipped configuration (never a second copy).

customers with one protected column per operator family of the product: AES-256-GCM envelope
encryption (`full_name`), a deterministic HMAC token (`email`), a format-preserving FF1 token
(`ssn`) and a mask (`phone`, last four digits); the non-personal columns are kept. The shipped
gate, and two role tables: `analyst` (EU rows, masks) and `support` (decrypts names).
The landing file holds exactly these columns (the synthetic batch minus date of birth, street
address and card number), so the plain job reads and writes the same data.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = (
    "customer_id", "full_name", "email", "phone", "ssn",
    "city", "country", "region", "balance", "signup_ts",
)  # fmt: skip
PROTECT = {
    "full_name": {"op": "encrypt", "key": "customer_pii"},
    "email": {"op": "tokenize", "kind": "hmac", "key": "contact_token"},
    "ssn": {"op": "fpe", "alphabet": "digits", "key": "ssn_fpe"},
    "phone": {"op": "partial", "show_last": 4},
}
# Both roles see the key, the e-mail token, the masked phone and the location in clear.
_SHARED = {
    "customer_id": "clear", "email": "token", "phone": "token",
    "city": "clear", "country": "clear", "region": "clear",
}  # fmt: skip
ROLES = {
    "analyst": {
        "description": "EU customers, masked identifiers",
        "attributes": {"region": "EU"},
        "tables": {
            "customers": {
                "rows": "region = :region",
                "columns": {
                    **_SHARED,
                    "ssn": "mask:last4",
                    "balance": "mask:bucket:1000",
                    "signup_ts": "clear",
                },
            }
        },
    },
    "support": {
        "description": "Reads names to answer calls",
        "keys": ["customer_pii"],
        "tables": {"customers": {"rows": "true", "columns": {**_SHARED, "full_name": "decrypt"}}},
    },
}


def write_workload_config(dest: Path) -> Path:
    """`dest/pipeline.yaml` (+ gates/, access/) for the standard workload; returns its path."""
    doc = yaml.safe_load((ROOT / "conf" / "pipeline.yaml").read_text())
    # Column keys: the workload measures one operator family per column, without a subject.
    doc["keys"].update(
        customer_pii={"type": "aead"}, contact_token={"type": "hmac"}, ssn_fpe={"type": "fpe"}
    )
    customers = doc["tables"]["customers"]
    customers["columns"] = {c: customers["columns"][c] for c in COLUMNS}
    for column, protect in PROTECT.items():
        customers["columns"][column]["protect"] = protect
    customers.pop("subject", None)  # per-subject keys are measured by bench/erasure.py
    doc["tables"] = {"customers": customers}
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "conf" / "gates", dest / "gates", dirs_exist_ok=True)
    (dest / "access").mkdir(exist_ok=True)
    (dest / "access" / "roles.yaml").write_text(yaml.safe_dump({"roles": ROLES}, sort_keys=False))
    path = dest / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def project_landing(source: Path, dest: Path) -> int:
    """Copy a generated customers CSV keeping only the workload's columns; returns data rows.

    Malformed rows of the synthetic batch stay malformed (short rows are padded, not repaired).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with (
        source.open(newline="", encoding="utf-8") as fin,
        dest.open("w", newline="", encoding="utf-8") as fout,
    ):
        reader = csv.reader(fin)
        writer = csv.writer(fout, lineterminator="\n")
        header = next(reader)
        index = [header.index(c) for c in COLUMNS]
        writer.writerow(COLUMNS)
        for record in reader:
            writer.writerow([record[i] if i < len(record) else "" for i in index])
            rows += 1
    return rows
