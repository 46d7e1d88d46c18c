"""The leak scanner itself must find what it looks for, or a clean result proves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.leakscan import find_plaintext

pytestmark = pytest.mark.spark


def test_scanner_finds_a_planted_value_in_delta_data_and_log(spark, tmp_path: Path) -> None:
    path = tmp_path / "t"
    spark.createDataFrame([("planted.person@example.com", 1)], "email string, n int").write.format(
        "delta"
    ).save(str(path))
    hits = find_plaintext(tmp_path, ["planted.person@example.com", "never-written-value"])
    files = {Path(f).name for f, _ in hits}
    assert any(name.endswith(".parquet") for name in files)  # the decompressed data
    assert any(name.endswith(".json") for name in files)  # the min/max statistics
    assert all(v == "planted.person@example.com" for _, v in hits)
