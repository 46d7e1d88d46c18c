"""Right to erasure that survives time travel, re-runs, later files and key rotation."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from urllib.parse import unquote

import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from securepipe.access.views import reveal_columns
from securepipe.crypto.keyring import Keyring
from securepipe.io.generate import generate_landing
from securepipe.io.subject_store import rewrap_store, subject_hashes, subject_keys_wrapped_under
from securepipe.layout import Layout
from securepipe.pipeline import resolve_keys, run_nightly
from securepipe.pipeline.erasure import erase_subjects, verify_erasure
from tests.builders import loaded, write_config
from tests.leakscan import find_plaintext

pytestmark = pytest.mark.spark
DAY, DAY2 = "2026-07-01", "2026-07-02"
VICTIM = "C000000005"


@pytest.fixture(scope="module")
def env(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("erasure")
    path = write_config(tmp)
    cfg, policy = loaded(path)
    generate_landing(cfg.landing, DAY, rows=400, seed=77)
    generate_landing(cfg.landing, DAY2, rows=40, seed=78)  # the same customers, a day later
    result = run_nightly(spark, cfg, DAY, policy=policy)
    with (Path(cfg.landing) / "customers" / DAY / "part-0000.csv").open(encoding="utf-8") as fh:
        source = {r["customer_id"]: r for r in csv.DictReader(fh) if r["customer_id"]}
    return {
        "cfg": cfg,
        "policy": policy,
        "source": source,
        "version": result.tables[0].table_version,
        "support_version": result.tables[0].access["support"],
    }


@pytest.fixture
def keys(env):
    """The pipeline's key handles as the keyring holds them now (a test may rotate a key)."""
    return resolve_keys(env["cfg"], list(env["cfg"].tables))


@pytest.fixture(scope="module")
def victim_erased(env, spark):
    """VICTIM erased once, with what an authorised reader saw of VICTIM and another subject in
    the version before; the tests that start from an erased subject ask for this."""
    cfg = env["cfg"]
    ids = [VICTIM, "C000000006"]
    before = _revealed(spark, env, resolve_keys(cfg, list(cfg.tables)), env["version"], ids)
    keys = resolve_keys(cfg, list(cfg.tables))
    result = erase_subjects(spark, cfg, [VICTIM], keys, "erase-test-1", env["policy"])
    return {"before": before, "result": result}


def _revealed(spark, env, keys, version, ids):
    cfg = env["cfg"]
    df = (
        spark.read.format("delta")
        .option("versionAsOf", version)
        .load(Layout.of(cfg).table("customers"))
    )
    df = df.where(F.col("customer_id").isin(ids)).select("customer_id", "full_name", "phone")
    out = reveal_columns(spark, cfg, "customers", df, keys).collect()
    return {r["customer_id"]: (r["full_name"], r["phone"]) for r in out}


def test_subject_keys_are_stored_wrapped_under_hashed_ids(env, spark, keys) -> None:
    cfg = env["cfg"]
    store = spark.read.format("delta").load(Layout.of(cfg).subject_store)
    hashes = [r[0] for r in store.select("subject_hash").collect()]
    assert len(hashes) == len(set(hashes))  # one key per subject
    # Every subject of the batch has a key (rejected rows too), or a tombstone if a test erased it.
    expected = set(subject_hashes(keys["subject_index"], env["source"]))
    tombstoned = (
        {r[0] for r in spark.read.format("delta").load(Layout.of(cfg).tombstones).collect()}
        if Path(Layout.of(cfg).tombstones).exists()
        else set()
    )
    assert expected <= set(hashes) | tombstoned
    assert not set(hashes) & set(env["source"])
    assert find_plaintext(Path(Layout.of(cfg).subject_store), list(env["source"])) == []
    # Every wrap names the KEK version that wrapped it.
    wrapped = sum(subject_keys_wrapped_under(spark, Layout.of(cfg), v) for v in (1, 2, 3))
    assert wrapped == len(hashes)


def test_erase_one_subject_then_time_travel_cannot_read_it(env, spark, keys, victim_erased) -> None:
    cfg, version = env["cfg"], env["version"]
    victim, other = VICTIM, "C000000006"
    before, result = victim_erased["before"], victim_erased["result"]
    assert before[victim] == (env["source"][victim]["full_name"], env["source"][victim]["phone"])
    assert (result.keys_destroyed, result.unknown) == (1, 0)
    assert result.rows_deleted["tables/customers"] == 1
    now = spark.read.format("delta").load(Layout.of(cfg).table("customers"))
    assert now.where(F.col("customer_id") == victim).count() == 0
    for role in ("analyst", "support"):
        role_df = spark.read.format("delta").load(Layout.of(cfg).access(role, "customers"))
        assert role_df.where(F.col("customer_id") == victim).count() == 0
    old = _revealed(spark, env, keys, version, [victim, other])  # the version before the erasure
    assert old[victim] == (None, None)  # stored, but no key can open it any more
    assert old[other] == (env["source"][other]["full_name"], env["source"][other]["phone"])
    stored = (
        spark.read.format("delta")
        .option("versionAsOf", version)
        .load(Layout.of(cfg).table("customers"))
        .where(F.col("customer_id") == victim)
    )
    assert stored.where(F.col("full_name").isNotNull()).count() == 1
    # A role's time travel leaves out subjects erased since (support sees the ids in clear).
    from securepipe.access.views import read_as

    support_then = env["support_version"]
    then = read_as(spark, cfg, env["policy"], "customers", "support", version=support_then)
    ids = {r["customer_id"] for r in then.select("customer_id").collect()}
    assert victim not in ids and other in ids
    report = verify_erasure(spark, cfg, [victim], keys, env["policy"])
    assert report["values_found"] >= 2 and report["tables_checked"] >= 6
    assert report["tombstoned"] == 1 and report["subject_keys_live"] == 0
    # Not "erased": the version before the erasure still reads the subject's row, with its id,
    # balance, city and signup time in clear, until VACUUM (or `erase --purge`).
    assert not report["erased"] and report["values_readable"] == 0
    pending = report["tables"]["tables/customers"]["rows"]
    assert pending["rows"] == 1 and pending["versions"][0] <= version <= pending["versions"][1]
    assert pending["status"].startswith(
        f"pending: readable in versions {pending['versions'][0]}-{pending['versions'][1]} of "
        "tables/customers until VACUUM on "
    )
    assert "rows" in report["tables"]["access/support/customers"]
    columns = report["tables"]["tables/customers"]["columns"]
    # Complete shredding: every personal column of the subject is under the subject's key.
    assert set(columns) == {
        "full_name", "email", "phone", "ssn", "date_of_birth", "street_address", "card_number"
    }  # fmt: skip
    assert {c["status"] for c in columns.values()} == {"shredded"}
    assert "access/support/customers" in report["tables"]


def _store_hashes(spark, cfg):
    return [r[0] for r in spark.read.format("delta").load(Layout.of(cfg).subject_store).collect()]


def test_rerun_and_a_later_file_do_not_bring_an_erased_subject_back(
    victim_erased, env, spark, keys
) -> None:
    cfg = env["cfg"]
    keys_before = len(_store_hashes(spark, cfg))
    for day in (DAY, DAY2):  # the same landing folder re-run, then the subject in a new file
        result = run_nightly(spark, cfg, day)
        customers = next(t for t in result.tables if t.table == "customers")
        assert customers.rows_erased == 1 and customers.reasons["ERASED_SUBJECT"] == 1
        assert customers.rows_read == (
            customers.rows_published + customers.rows_quarantined + customers.rows_erased
        )
    for path in (Layout.of(cfg).table("customers"), Layout.of(cfg).quarantine("customers")):
        df = spark.read.format("delta").load(path)
        assert df.where(F.col("customer_id") == VICTIM).count() == 0
    assert len(_store_hashes(spark, cfg)) == keys_before  # no new key for the erased subject
    store = _store_hashes(spark, cfg)
    assert len(store) == len(set(store))  # one key per subject
    # The nights moved the keyring's generation (encryption counts): fresh handles.
    report = verify_erasure(
        spark, cfg, [VICTIM], resolve_keys(cfg, list(cfg.tables)), env["policy"]
    )
    # Nothing in any current version and nothing readable but what older versions keep.
    assert report["values_readable"] == 0 and report["tombstoned"] == 1, report
    rows = [e["rows"]["status"] for e in report["tables"].values() if "rows" in e]
    assert rows and all(r.startswith("pending: readable in versions") for r in rows), rows
    audit = spark.read.format("delta").load(str(Path(cfg.lakehouse) / "_audit" / "runs"))
    last = audit.orderBy(F.col("ended_at").desc()).first()
    assert '"rows_erased": 1' in last["tables"]


def test_purge_leaves_no_version_on_storage_that_reads_the_subject(
    victim_erased, env, spark
) -> None:
    # Runs before the tests that purge other subjects (their purges remove shared files).
    cfg, version = env["cfg"], env["version"]
    layout = Layout.of(cfg)
    old = spark.read.format("delta").option("versionAsOf", version).load(layout.table("customers"))
    assert old.where(F.col("customer_id") == VICTIM).count() == 1  # before the purge
    keys = resolve_keys(cfg, list(cfg.tables))
    result = erase_subjects(spark, cfg, [VICTIM], keys, "erase-purge", env["policy"], purge=True)
    assert result.files_purged.get("tables/customers", 0) >= 1 and result.purge_blocked == []
    report = verify_erasure(spark, cfg, [VICTIM], keys, env["policy"])
    assert report["erased"], report["tables"]
    # The version before the erasure cannot be read any more (its file is gone)...
    with pytest.raises(Exception, match=r"(?i)FileNotFound|FILE_NOT_FOUND|does not exist"):
        spark.read.format("delta").option("versionAsOf", version).load(
            layout.table("customers")
        ).where(F.col("customer_id") == VICTIM).count()
    # ...no file on storage holds the id, nor does any table's log (no statistics of it).
    roots = [layout.table(t) for t in cfg.tables] + [layout.quarantine(t) for t in cfg.tables]
    roots += [str(p) for p in Path(cfg.lakehouse, "access").glob("*/*")]
    assert [hit for r in roots for hit in find_plaintext(Path(r), [VICTIM])] == []


def test_vacuum_of_the_store_restores_the_sessions_retention_setting(env, spark, keys) -> None:
    key = "spark.databricks.delta.retentionDurationCheck.enabled"
    spark.conf.set(key, "false")  # whatever the session had, it has again afterwards
    try:
        erase_subjects(spark, env["cfg"], ["C000000009"], keys, "erase-setting")
        assert spark.conf.get(key) == "false"  # not reset to a hard-coded "true"
    finally:
        spark.conf.set(key, "true")


def test_rotating_the_subject_kek_keeps_runs_reads_and_erasure_working(env, spark) -> None:
    from securepipe.access.views import read_as

    cfg, policy = env["cfg"], env["policy"]
    ring = Keyring(cfg.keystore)
    assert ring.rotate("subject_kek") == 2
    assert ring.rotate("quarantine") == 2  # an aead column key rotates in place too
    keys = resolve_keys(cfg, list(cfg.tables))
    batches = generate_landing(cfg.landing, "2026-07-03", rows=20, seed=79)
    for batch in batches.values():  # customers never seen before
        batch.path.write_text(batch.path.read_text().replace("C0000000", "N0000000"))
    run_nightly(spark, cfg, "2026-07-03", policy=policy)
    # New subjects are wrapped under v2; older ones still under v1, and both open.
    assert subject_keys_wrapped_under(spark, Layout.of(cfg), 2) >= 1
    assert subject_keys_wrapped_under(spark, Layout.of(cfg), 1) >= 1
    support = read_as(spark, cfg, policy, "customers", "support")
    assert support.where(F.col("full_name").isNull()).count() == 0
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    versions = {
        int.from_bytes(bytes(r[0])[1:5], "big"): str(r[1])
        for r in q.where("_raw_record is not null").select("_raw_record", "run_date").collect()
    }
    assert versions.get(2) == "2026-07-03" and 1 in versions  # old raw records keep v1
    rewrapped = rewrap_store(spark, Layout.of(cfg), keys["subject_kek"])
    assert rewrapped == subject_keys_wrapped_under(spark, Layout.of(cfg), 2)
    assert subject_keys_wrapped_under(spark, Layout.of(cfg), 1) == 0
    ring.destroy("subject_kek", 1)  # safe now: nothing is wrapped under it any more
    keys = resolve_keys(cfg, list(cfg.tables))
    support = read_as(spark, cfg, policy, "customers", "support")
    assert support.count() > 0 and support.where(F.col("full_name").isNull()).count() == 0
    victim = "C000000011"
    erase_subjects(spark, cfg, [victim], keys, "erase-after-rotation", policy, purge=True)
    report = verify_erasure(spark, cfg, [victim], keys, policy)
    assert report["erased"], report


def test_erasing_twice_is_a_no_op_and_unknown_subjects_are_reported(
    victim_erased, env, spark, keys
) -> None:
    result = erase_subjects(spark, env["cfg"], [VICTIM, "NO-SUCH-SUBJECT"], keys, "erase-test-2")
    assert (result.requested, result.keys_destroyed, result.unknown) == (2, 0, 2)
    assert set(result.rows_deleted.values()) == {0}
    # A subject erased before it ever arrives is tombstoned all the same.
    assert result.tombstones_added == 1
    tombs = spark.read.format("delta").load(Layout.of(env["cfg"]).tombstones)
    assert "NO-SUCH-SUBJECT" not in {r[0] for r in tombs.collect()}  # keyed hashes only


def test_store_files_of_destroyed_keys_are_vacuumed(victim_erased, env, spark) -> None:
    cfg = env["cfg"]
    history = DeltaTable.forPath(spark, Layout.of(cfg).subject_store).history().collect()
    assert any(r["operation"] == "VACUUM END" for r in history)
    # Only the current snapshot's files are on storage: every file that held a destroyed
    # wrapped key (the commit log still names them) is physically gone.
    root = Path(Layout.of(cfg).subject_store)
    on_disk = {p.name for p in root.rglob("*.parquet") if "_delta_log" not in p.parts}
    live = {
        unquote(f).rsplit("/", 1)[-1]
        for f in spark.read.format("delta").load(str(root)).inputFiles()
    }
    assert on_disk == live
    ever = {
        json.loads(line)["add"]["path"].rsplit("/", 1)[-1]
        for log in (root / "_delta_log").glob("*.json")
        for line in log.read_text().splitlines()
        if line.startswith('{"add"')
    }
    assert ever - on_disk  # files were rewritten by the DELETE, and their old bytes are gone


def test_bulk_erasure_of_three_hundred_subjects(env, spark, keys) -> None:
    cfg = env["cfg"]
    ids = sorted(env["source"])[100:400]
    result = erase_subjects(spark, cfg, ids, keys, "erase-bulk", env["policy"], purge=True)
    assert result.keys_destroyed == 300 and sum(result.files_purged.values()) > 0
    assert result.purge_blocked == []
    report = verify_erasure(spark, cfg, ids, keys, env["policy"])
    # Every file that held them is gone, shredded ciphertexts included.
    assert report["erased"] and report["values_found"] == 0, report["tables"]
    assert report["rows_on_storage"] == 0 and report["log_mentions"] == 0
    remaining = spark.read.format("delta").load(Layout.of(cfg).table("customers"))
    assert remaining.where(F.col("customer_id").isin(ids)).count() == 0
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    assert q.where(F.col("customer_id").isin(ids)).count() == 0


def test_erase_cli_audit_entry_holds_keyed_hashes_not_ids(env, spark, keys, tmp_path, cli) -> None:
    import json

    from deltalake import DeltaTable as RsTable

    cfg = env["cfg"]
    victim = "C000000007"
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{victim}\nUNKNOWN-ID-123\n")
    args = ["erase", "--config", cfg.source_file, "--subjects", str(ids), "--purge"]
    proc = cli(*args, "--reason", "DSR-0001")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "erased 1 of 2 subjects (1 unknown" in proc.stdout
    audit = RsTable(str(Path(cfg.lakehouse) / "_audit" / "runs")).to_pyarrow_table().to_pylist()
    erasures = [r for r in audit if r["job"] == "erase"]
    # Every erasure is audited, the library's as well as the CLI's.
    assert len(erasures) >= 2
    [entry] = [r for r in erasures if r["message"].startswith("DSR-0001:")]
    text = json.dumps(entry, default=str)
    assert victim not in text and "UNKNOWN-ID-123" not in text
    # Not even the keyed hashes: they stay in the tombstones only (an append-only audit log and
    # commit records outlive every erasure; a hash there links the subject's runs for ever).
    hashes = subject_hashes(keys[cfg.erasure.index_key], [victim, "UNKNOWN-ID-123"])
    assert "DSR-0001" in entry["message"] and "subject_hashes" not in json.loads(entry["tables"])
    assert not [h for h in hashes if h in text]
    logs = [Layout.of(cfg).table(t) for t in cfg.tables] + [Layout.of(cfg).quarantine("customers")]
    logs += [str(p) for p in Path(cfg.lakehouse, "access").glob("*/*")]
    for log in logs:
        for commit in Path(log, "_delta_log").glob("*.json"):
            assert not [h for h in hashes if h in commit.read_text()], commit
    # The reports' index lists the erasure at once (not at the next night).
    index = (Path(Layout.of(cfg).reports) / "index.html").read_text()
    assert entry["run_id"] in index and "DSR-0001" in index
    # verify-erasure's CLI (exit codes, per-column lines) is run in test_erasure_partial.py.
    report = verify_erasure(spark, cfg, [victim], keys, env["policy"])
    assert report["erased"], report


def test_the_subject_index_key_cannot_be_rotated(env) -> None:
    import subprocess
    import sys

    cfg = env["cfg"]
    exe = str(Path(sys.executable).parent / "securepipe")
    proc = subprocess.run(
        [exe, "keys", "rotate", "subject_index", "--config", cfg.source_file],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "key 'subject_index' (hmac) cannot be rotated" in proc.stderr
    assert "subject index key of erasure cannot be replaced" in proc.stderr
    assert Keyring(cfg.keystore).handle("subject_index").current == 1


def test_a_keyring_lost_and_created_anew_is_refused_before_erase_writes(
    env, spark, tmp_path
) -> None:
    import shutil

    from securepipe.errors import KeyAccessError
    from securepipe.io.subject_store import check_index_key

    cfg = env["cfg"]
    secrets = tmp_path / "secrets"
    shutil.copytree(cfg.keystore.path, secrets)
    (secrets / "keyring.json").unlink()
    lost = cfg.model_copy(
        update={"keystore": cfg.keystore.model_copy(update={"path": str(secrets)})}
    )
    # No command regenerates it silently...
    with pytest.raises(KeyAccessError, match=r"keyring .* does not exist: .* keys init"):
        resolve_keys(lost, list(cfg.tables))
    # ...and one that `keys init` made anew (the same master key) cannot erase or verify: its
    # index key would find no subject key and no tombstone, and "shred" nothing.
    Keyring(lost.keystore, create=True).ensure(lost.keys)
    keys = resolve_keys(lost, list(cfg.tables))
    layout = Layout.of(cfg)
    tombstones = len(DeltaTable.forPath(spark, layout.tombstones).history().collect())
    with pytest.raises(KeyAccessError, match=r"another subject index key"):
        check_index_key(spark, layout, keys[cfg.erasure.index_key])
    for job in (
        lambda: erase_subjects(spark, lost, [VICTIM], keys, "erase-lost", env["policy"]),
        lambda: verify_erasure(spark, lost, [VICTIM], keys, env["policy"]),
    ):
        with pytest.raises(KeyAccessError, match=r"rolled back|another subject index key"):
            job()
    assert len(DeltaTable.forPath(spark, layout.tombstones).history().collect()) == tombstones


def test_a_mistyped_id_in_quarantine_is_erased_and_orphans_are_reported(env, spark) -> None:
    # The id arrives in another case with spaces around it, on a row that is rejected: its raw
    # record sat in quarantine under that spelling, out of reach of an exact-match erasure.
    cfg, policy = env["cfg"], env["policy"]
    day, victim = "2026-07-09", "C000000021"
    source = dict(env["source"][victim])
    folder = Path(cfg.landing) / "customers" / day
    folder.mkdir(parents=True)
    good = {**env["source"]["C000000022"]}
    bad = {**source, "customer_id": f" {victim.lower()} ", "date_of_birth": "not a date"}
    orphan = {**env["source"]["C000000023"], "customer_id": ""}
    with (folder / "part-0.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(good))
        writer.writeheader()
        writer.writerows([good, bad, orphan])
    run_nightly(spark, cfg, day, tables=["customers"], policy=policy)
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    assert q.where(F.upper(F.trim("customer_id")) == victim).count() == 1
    keys = resolve_keys(cfg, list(cfg.tables))
    result = erase_subjects(spark, cfg, [victim], keys, "erase-mistyped", policy)
    assert result.rows_deleted["quarantine/customers"] >= 1
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    assert q.where(F.upper(F.trim("customer_id")) == victim).count() == 0
    report = verify_erasure(spark, cfg, [victim], resolve_keys(cfg, list(cfg.tables)), policy)
    orphans = report["tables"]["quarantine/customers"]["unattributed"]
    assert orphans["raw_records"] >= 1
    assert (
        "cannot be attributed" in orphans["status"] and "quarantine retention" in orphans["status"]
    )
