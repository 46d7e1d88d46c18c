"""Test helper: look for plaintext values in every file under a folder.

Parquet files are read through pyarrow (decompressed, every column, every row group); every other
file (Delta log JSON with its column statistics, checksums, reports, logs) is searched as bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pyarrow.parquet as pq


def _parquet_text(path: Path) -> str:
    table = pq.read_table(path)
    parts: list[str] = []
    for column in table.columns:
        for value in column.to_pylist():
            if value is None:
                continue
            if isinstance(value, bytes):
                parts.append(value.decode("latin-1"))
            else:
                parts.append(str(value))
    return "\n".join(parts)


def find_plaintext(root: Path, values: Iterable[str]) -> list[tuple[str, str]]:
    """(file, value) pairs for each plaintext value found under `root`; empty means clean."""
    needles = {v for v in values if v and len(v) >= 4}
    hits: list[tuple[str, str]] = []
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files, f"nothing to scan under {root}"
    for path in files:
        if path.suffix == ".parquet":
            text = _parquet_text(path)
        else:
            text = path.read_bytes().decode("utf-8", errors="replace")
        hits.extend((str(path), v) for v in needles if v in text)
    return hits


def parquet_files(root: Path) -> list[Path]:
    """Every data Parquet file under `root` (checkpoints included)."""
    return [p for p in root.rglob("*.parquet") if p.is_file()]
