"""The subject key store under overlapping writers: one key per subject, whoever comes first."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from securepipe.io import subject_store
from securepipe.layout import Layout
from securepipe.locks import file_lock
from securepipe.pipeline import resolve_keys
from tests.builders import loaded, write_config

pytestmark = pytest.mark.spark


def test_overlapping_creations_give_each_subject_one_key(spark, tmp_path) -> None:
    cfg, _ = loaded(write_config(tmp_path))
    keys = resolve_keys(cfg, ["customers"])
    layout = Layout.of(cfg)
    erasure = cfg.erasure
    assert erasure is not None
    index, kek = keys[erasure.index_key], keys[erasure.kek]
    subject_store.check_index_key(spark, layout, index)

    def batch(first: int) -> DataFrame:
        ids = spark.range(first, first + 300).select(F.format_string("C%09d", "id").alias("id"))
        return subject_store.with_subject_hash(ids, "id", index)

    created: list[int] = []
    lock = Path(layout.locks) / "subject-keys.lock"
    # Both writers meet subjects 100-299; the first holds the store's lock until both wait.
    with file_lock(lock, exclusive=True, what="test"):
        writers = [
            threading.Thread(
                target=lambda f=first: created.append(
                    subject_store.ensure_subject_keys(spark, layout, batch(f), kek)
                )
            )
            for first in (0, 100)
        ]
        for w in writers:
            w.start()
        time.sleep(3)  # both reach the lock (they plan their frames first)
    for w in writers:
        w.join(timeout=300)
    store = spark.read.format("delta").load(layout.subject_store)
    hashes = [r[0] for r in store.select("subject_hash").collect()]
    assert len(hashes) == len(set(hashes)) == 400  # one key for each of 400 subjects
    assert sorted(created) == [100, 300]  # the second found the first one's keys
    # A third night of known subjects creates none and makes no commit.
    log = Path(layout.subject_store) / "_delta_log"
    commits = len(list(log.glob("*.json")))
    assert subject_store.ensure_subject_keys(spark, layout, batch(0), kek) == 0
    assert len(list(log.glob("*.json"))) == commits
