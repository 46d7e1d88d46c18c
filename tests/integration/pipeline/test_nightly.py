"""The nightly job on a small synthetic batch: counts, quarantine, idempotency, no leaks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from securepipe.crypto import keycache
from securepipe.crypto.envelope import decrypt_value
from securepipe.crypto.keyring import Keyring
from securepipe.errors import SchemaDriftError, SourceError
from securepipe.io.generate import generate_landing
from securepipe.layout import Layout
from securepipe.pipeline import run_nightly
from tests.builders import make_config, published_then_refused
from tests.leakscan import find_plaintext, parquet_files

pytestmark = pytest.mark.spark

RUN_DATE = "2026-11-28"
ROWS = 200
PII_COLUMNS = ("full_name", "email", "phone", "ssn", "card_number", "street_address")


@pytest.fixture(scope="module")
def nightly(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nightly")
    cfg = make_config(tmp)
    batches = generate_landing(cfg.landing, RUN_DATE, rows=ROWS, seed=11)
    first = run_nightly(spark, cfg, RUN_DATE)
    return {"cfg": cfg, "tmp": tmp, "batches": batches, "first": first}


def _landing_values(path: Path, columns: tuple[str, ...]) -> set[str]:
    with path.open(encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return {row[c] for row in reader for c in columns if row.get(c)}


def _keys(cfg, name):
    return keycache.data_keys(Keyring(cfg.keystore).handle(name))


def test_published_equals_read_minus_quarantined(nightly, spark) -> None:
    for result in nightly["first"].tables:
        landing_rows = nightly["batches"][result.table].rows
        assert result.rows_read == landing_rows
        assert result.rows_quarantined == nightly["batches"][result.table].malformed == 4
        assert result.rows_published == landing_rows - result.rows_quarantined
        published = spark.read.format("delta").load(result.table_path)
        assert published.count() == result.rows_published


def test_every_quarantined_row_has_a_reason(nightly, spark) -> None:
    cfg = nightly["cfg"]
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    reasons = sorted(tuple(r["_reasons"]) for r in q.select("_reasons").collect())
    assert all(reasons)
    assert reasons == sorted(
        [
            ("INVALID_DATE:date_of_birth",),
            ("MISSING_KEY:customer_id",),
            ("INVALID_DECIMAL:balance",),
            ("MALFORMED_RECORD",),
        ]
    )
    tq = spark.read.format("delta").load(Layout.of(cfg).quarantine("transactions"))
    codes = {c for r in tq.select("_reasons").collect() for c in r["_reasons"]}
    assert codes == {
        "INVALID_DECIMAL:amount",
        "MISSING_KEY:txn_id",
        "INVALID_TIMESTAMP:ts",
        "MALFORMED_RECORD",
    }
    assert {r["_run_id"] for r in q.select("_run_id").collect()} == {nightly["first"].run_id}


def _raw_records(spark, cfg):
    """Every raw record of the customers quarantine, opened as the pipeline's operator can:
    under the subject's key when the subject is known, else under the quarantine key."""
    from securepipe.io.subject_store import attach_subject_keys, with_subject_hash
    from securepipe.pipeline import resolve_keys
    from securepipe.protect.subject_udfs import subject_expr

    keys = resolve_keys(cfg, ["customers"])
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    hashed = attach_subject_keys(
        spark, Layout.of(cfg), with_subject_hash(q, "customer_id", keys["subject_index"])
    )
    opened = hashed.select(
        "_raw_record",
        subject_expr(
            "decrypt", "customers", "_raw_record", keys["subject_kek"], F.col("_raw_subject_record")
        ).alias("subject_raw"),
    ).collect()
    qkeys = _keys(cfg, "quarantine")
    return [
        r["subject_raw"]
        if r["subject_raw"] is not None
        else decrypt_value(qkeys, "customers", "_raw_record", bytes(r["_raw_record"]))
        for r in opened
    ]


def test_quarantined_raw_record_is_encrypted_and_recoverable(nightly, spark) -> None:
    cfg = nightly["cfg"]
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    types = dict(q.dtypes)
    assert types["_raw_record"] == types["_raw_subject_record"] == "binary"
    # Rows whose subject is known keep their raw record under the subject's key (erasable);
    # only the row without a customer id uses the quarantine key.
    both = q.select(
        F.count("_raw_record").alias("q"), F.count("_raw_subject_record").alias("s")
    ).first()
    assert (both["q"], both["s"]) == (1, 3)
    raws = _raw_records(spark, cfg)
    assert len(raws) == 4
    assert any("1985-13-45" in raw for raw in raws)
    assert any("unexpected-extra-field" in raw for raw in raws)


def test_protected_columns_round_trip_for_authorised_readers(nightly, spark) -> None:
    from securepipe.access.views import reveal_columns
    from securepipe.pipeline import resolve_keys

    cfg = nightly["cfg"]
    landing = nightly["batches"]["customers"].path
    with landing.open(encoding="utf-8") as fh:
        source = {r["customer_id"]: r for r in csv.DictReader(fh)}
    df = spark.read.format("delta").load(Layout.of(cfg).table("customers"))
    types = dict(df.dtypes)
    assert types["full_name"] == types["date_of_birth"] == "binary"
    keys = resolve_keys(cfg, ["customers"])
    wanted = df.select("customer_id", "email", "date_of_birth", "card_number").limit(25)
    for row in reveal_columns(spark, cfg, "customers", wanted, keys).collect():
        original = source[row["customer_id"]]
        assert row["date_of_birth"].isoformat() == original["date_of_birth"]  # a date again
        assert row["email"] == original["email"]
        assert row["card_number"] == original["card_number"]


def test_spark_sql_aes_decrypt_reads_our_envelopes(nightly, spark) -> None:
    cfg = nightly["cfg"]
    key = _keys(cfg, "quarantine")[1]
    df = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    out = (
        df.where("_raw_record is not null")
        .select(
            "_raw_record",
            F.expr(
                f"cast(aes_decrypt(substring(_raw_record, 6), unhex('{key.hex()}'), 'GCM', "
                "'DEFAULT', 'securepipe:customers._raw_record:v1') as string)"
            ).alias("clear"),
        )
        .collect()
    )
    assert out
    for row in out:
        assert row["clear"] == decrypt_value(
            {1: key}, "customers", "_raw_record", bytes(row["_raw_record"])
        )


def test_spark_sql_aes_decrypt_refuses_wrong_column_aad(nightly, spark) -> None:
    cfg = nightly["cfg"]
    key = _keys(cfg, "quarantine")[1]
    df = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    expr = (
        f"try_aes_decrypt(substring(_raw_record, 6), unhex('{key.hex()}'), 'GCM', 'DEFAULT', "
        "'securepipe:transactions._raw_record:v1')"
    )
    assert df.where("_raw_record is not null").count() == 1
    assert df.select(F.expr(expr).alias("x")).where("x is not null").count() == 0


def test_commit_carries_run_id_and_config_hash(nightly, spark) -> None:
    from delta.tables import DeltaTable

    cfg, first = nightly["cfg"], nightly["first"]
    last = DeltaTable.forPath(spark, Layout.of(cfg).table("customers")).history(1).collect()[0]
    record = json.loads(last["userMetadata"])
    assert record["run_id"] == first.run_id
    assert record["config_hash"] == cfg.fingerprint()
    assert record["key_versions"] == {"subject_kek": 1, "subject_index": 1, "quarantine": 1}
    assert record["keyring_generation"] >= 1
    # Random-nonce AES-GCM encryptions per key version: the one raw record without a subject.
    assert record["encryptions"] == {"quarantine:v1": 1}
    assert record["rows_erased"] == 0


def test_no_plaintext_pii_anywhere_in_the_lakehouse(nightly) -> None:
    values = _landing_values(nightly["batches"]["customers"].path, PII_COLUMNS)
    values |= _landing_values(nightly["batches"]["transactions"].path, ("card_number",))
    assert len(values) > 5 * ROWS
    root = Path(nightly["cfg"].lakehouse)
    assert parquet_files(root)
    assert find_plaintext(root, values) == []


def test_delta_log_statistics_only_cover_clear_columns(nightly) -> None:
    log = Path(Layout.of(nightly["cfg"]).table("customers")) / "_delta_log"
    stats = [
        json.loads(json.loads(line)["add"]["stats"])
        for f in sorted(log.glob("*.json"))
        for line in f.read_text().splitlines()
        if '"add"' in line
    ]
    assert stats
    for s in stats:
        assert set(s["minValues"]) <= {
            "customer_id",
            "city",
            "country",
            "region",
            "balance",
            "signup_ts",
        }


def test_independent_delta_rs_reader_reads_the_table(nightly) -> None:
    from deltalake import DeltaTable

    result = next(t for t in nightly["first"].tables if t.table == "customers")
    dt = DeltaTable(result.table_path)
    assert dt.version() == result.table_version
    table = dt.to_pyarrow_table()
    assert table.num_rows == result.rows_published
    assert "full_name" in table.column_names and "run_date" in table.column_names


def test_rerunning_a_date_replaces_it(nightly, spark) -> None:
    cfg = nightly["cfg"]

    def content():
        # Per-subject tokens are deterministic: a re-run gives the same tokens.
        df = spark.read.format("delta").load(Layout.of(cfg).table("customers"))
        return sorted(
            (r["customer_id"], r["email"], r["ssn"], r["phone"], r["balance"]) for r in df.collect()
        )

    before = content()
    second = run_nightly(spark, cfg, RUN_DATE, tables=["customers"])
    assert second.tables[0].table_version == nightly["first"].tables[0].table_version + 1
    after = content()
    assert len(after) == len(before) == ROWS
    assert after == before
    q = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers"))
    assert q.count() == 4


def test_undeclared_landing_column_stops_the_run(spark, tmp_path) -> None:
    cfg = make_config(tmp_path)
    folder = Path(cfg.landing) / "customers" / RUN_DATE
    folder.mkdir(parents=True)
    header = (
        "customer_id,full_name,email,phone,ssn,date_of_birth,street_address,city,country,"
        "region,card_number,balance,signup_ts,passport_no\n"
    )
    (folder / "part-0.csv").write_text(header)
    with pytest.raises(
        SchemaDriftError,
        match=r"table 'customers': 1 landing column\(s\) .* \(position 14 of 14; names not shown",
    ):
        run_nightly(spark, cfg, RUN_DATE, tables=["customers"])
    assert not Path(Layout.of(cfg).table("customers")).exists()


def test_a_landing_file_without_its_header_echoes_no_value(spark, tmp_path) -> None:
    # The first record stands where the header should be: Spark reads its values as column
    # names. The error, the audit row, the report pages and the lineage event name none of them.
    lineage = tmp_path / "lineage.jsonl"
    cfg = make_config(
        tmp_path,
        monitoring={"lineage": {"transport": "file", "path": str(lineage)}},
    )
    batches = generate_landing(cfg.landing, RUN_DATE, rows=5, seed=5)
    path = batches["customers"].path
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join(lines[1:]), encoding="utf-8")
    first = next(csv.reader([lines[1]]))
    secrets = [v for v in first if len(v) >= 4]
    assert len(secrets) >= 8  # name, e-mail, phone, SSN, card, address, ...
    with pytest.raises(SchemaDriftError, match=r"matches none of the 13 declared column") as err:
        run_nightly(spark, cfg, RUN_DATE, tables=["customers"])
    layout = Layout.of(cfg)
    audit = spark.read.format("delta").load(layout.audit).toJSON().collect()
    assert len(audit) == 1 and "matches none" in audit[0]
    written = [str(err.value), *audit, lineage.read_text(encoding="utf-8")]
    written += [p.read_text(encoding="utf-8") for p in Path(layout.reports).rglob("*.*")]
    assert lineage.stat().st_size > 0 and len(written) >= 4  # + the runs index page
    for text in written:
        leaked = [v for v in secrets if v in text]
        assert not leaked, f"landing values echoed: {len(leaked)}"


def test_missing_landing_date_is_a_source_error(spark, tmp_path) -> None:
    cfg = make_config(tmp_path)
    with pytest.raises(SourceError, match=r"table 'customers': no landing files for 2026-01-01"):
        run_nightly(spark, cfg, "2026-01-01", tables=["customers"])


def test_nightly_tokens_keep_formats_and_reverse_for_authorised_readers(nightly, spark) -> None:
    import re

    from securepipe.access.views import reveal_columns
    from securepipe.pipeline import resolve_keys

    cfg = nightly["cfg"]
    with nightly["batches"]["customers"].path.open(encoding="utf-8") as fh:
        source = {r["customer_id"]: r for r in csv.DictReader(fh)}
    df = spark.read.format("delta").load(Layout.of(cfg).table("customers"))
    rows = df.select("customer_id", "ssn", "phone").limit(20).collect()
    assert all(re.fullmatch(r"\d{3}-\d{2}-\d{4}", r["ssn"]) for r in rows)
    assert all(r["ssn"] != source[r["customer_id"]]["ssn"] for r in rows)
    keys = resolve_keys(cfg, ["customers"])
    clear = reveal_columns(spark, cfg, "customers", df, keys).limit(20).collect()
    for r in clear:
        original = source[r["customer_id"]]
        # Revealed values have their declared types again (date_of_birth is a date).
        assert (r["ssn"], r["phone"], r["date_of_birth"].isoformat()) == (
            original["ssn"],
            original["phone"],
            original["date_of_birth"],
        )


def test_landing_columns_are_matched_by_name_and_bad_formats_quarantined(spark, tmp_path) -> None:
    cfg = make_config(tmp_path)
    folder = Path(cfg.landing) / "customers" / RUN_DATE
    folder.mkdir(parents=True)
    columns = list(cfg.table("customers").columns)[::-1]  # reversed order upstream
    good = {
        "customer_id": "C1",
        "full_name": "Ada Byron",
        "email": "ada@example.com",
        "phone": "+1-202-555-0100",
        "ssn": "123-45-6789",
        "date_of_birth": "1815-12-10",
        "street_address": "1 St James's Sq",
        "city": "London",
        "country": "GB",
        "region": "EU",
        "card_number": "4111111111111111",
        "balance": "10.00",
        "signup_ts": "2020-01-01 00:00:00",
    }
    short = {**good, "customer_id": "C2", "ssn": "12-34"}
    with (folder / "part-0.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows([good, short])
    result = run_nightly(spark, cfg, RUN_DATE, tables=["customers"]).tables[0]
    assert (result.rows_published, result.rows_quarantined) == (1, 1)
    assert result.reasons == {"INVALID_FORMAT:ssn": 1}
    row = spark.read.format("delta").load(Layout.of(cfg).table("customers")).collect()[0]
    assert (row["customer_id"], row["city"], str(row["balance"])) == ("C1", "London", "10.00")


def test_a_shifted_record_keeps_no_value_in_quarantines_clear_columns(spark, tmp_path) -> None:
    # One unquoted comma in the address shifts the rest of the record right: the card number
    # lands in `balance` (a valid decimal), the city in `country`. A rejected row keeps only its
    # key and subject in clear; everything else is in its encrypted raw record.
    cfg = make_config(tmp_path)
    folder = Path(cfg.landing) / "customers" / RUN_DATE
    folder.mkdir(parents=True)
    columns = list(cfg.table("customers").columns)
    fields = [
        "C9", "Grace Hopper", "grace@example.com", "+1-202-555-0199", "123-45-6789",
        "1906-12-09", "1 Navy Yard, Arlington", "Washington", "US", "NA",
        "4111111111111111", "12.50", "2020-01-01 00:00:00",
    ]  # fmt: skip
    good = [*fields[:6], "1 Navy Yard", *fields[7:]]
    good[0] = "C8"
    lines = [",".join(columns), ",".join(good), ",".join(fields)]
    (folder / "part-0.csv").write_text("\n".join(lines) + "\n")
    result = run_nightly(spark, cfg, RUN_DATE, tables=["customers"]).tables[0]
    assert (result.rows_published, result.rows_quarantined) == (1, 1)
    row = spark.read.format("delta").load(Layout.of(cfg).quarantine("customers")).first()
    assert row is not None and row["customer_id"] == "C9"
    in_clear = {c: row[c] for c in columns if c != "customer_id" and row[c] is not None}
    assert in_clear == {}
    assert row["_raw_subject_record"] is not None  # the record itself is kept, encrypted


def test_a_keyring_older_than_the_tables_last_commit_is_refused(nightly, spark) -> None:
    import dataclasses

    from securepipe.errors import KeyAccessError
    from securepipe.pipeline.keys import check_keyring_not_rolled_back, resolve_keys

    cfg = nightly["cfg"]
    keys = resolve_keys(cfg, ["customers"])
    path = Layout.of(cfg).table("customers")
    check_keyring_not_rolled_back(spark, path, "customers", keys)  # today's keyring passes
    # A keyring restored from an older copy: a lower generation than the last commit records.
    older = {n: dataclasses.replace(h, generation=0) for n, h in keys.items()}
    with pytest.raises(KeyAccessError, match=r"generation \d+, the key store holds generation 0"):
        check_keyring_not_rolled_back(spark, path, "customers", older)
    # A key whose current version went back below what the table was written with.
    rolled = {**keys, "quarantine": dataclasses.replace(keys["quarantine"], current=0)}
    with pytest.raises(KeyAccessError, match=r"key 'quarantine': table 'customers' was last"):
        check_keyring_not_rolled_back(spark, path, "customers", rolled)


def test_a_night_without_a_rejected_row_after_one_with_rejects(nightly, spark) -> None:
    """A clean night writes nothing to the quarantine table (Delta makes no empty commit): its
    row accounting must count 0 quarantined rows, not the rows of the previous night's commit."""
    cfg, day = nightly["cfg"], "2026-11-29"
    layout = Layout.of(cfg)
    batch = generate_landing(cfg.landing, day, rows=40, seed=12)["customers"]
    lines = batch.path.read_text().splitlines()
    batch.path.write_text("\n".join(lines[: -batch.malformed]) + "\n")  # the planted rows
    quarantine_before = spark.read.format("delta").load(layout.quarantine("customers")).count()
    [result] = run_nightly(spark, cfg, day, tables=["customers"]).tables
    assert (result.rows_read, result.rows_published, result.rows_quarantined) == (40, 40, 0)
    published = spark.read.format("delta").load(layout.table("customers"))
    assert published.where(F.col("run_date") == day).count() == 40
    quarantine = spark.read.format("delta").load(layout.quarantine("customers"))
    assert quarantine.count() == quarantine_before > 0


def _dates(spark, path: str) -> dict[str, int]:
    rows = spark.read.format("delta").load(path).groupBy("run_date").count().collect()
    return {str(r[0]): int(r[1]) for r in rows}


def test_a_failed_row_accounting_takes_back_only_its_own_commits(nightly, spark) -> None:
    """An overlapping run of another date commits to the same tables between this night's
    commits and its row accounting: the rollback must take back this night's date only."""
    cfg = nightly["cfg"]
    layout = Layout.of(cfg)
    failing, other = "2026-11-25", "2026-11-26"
    for seed, day in ((13, failing), (14, other)):
        generate_landing(cfg.landing, day, rows=30, seed=seed)
    before = {
        p: _dates(spark, p) for p in (layout.table("customers"), layout.quarantine("customers"))
    }

    def other_run() -> None:
        run_nightly(spark, cfg, other, tables=["customers"])

    published_then_refused(spark, cfg, failing, other_run)
    for path, dates in before.items():
        after = _dates(spark, path)
        assert failing not in after, path
        assert other in after, path  # the overlapping run's date survived the rollback
        assert {d: n for d, n in after.items() if d != other} == dates, path
    # A backfill does not take the rolled-back date for published.
    from securepipe.io.delta import commit_records
    from securepipe.pipeline.stages import already_published, read

    assert not already_published(spark, cfg, read(spark, cfg, "customers", failing))
    # The rollback commits carry a compliance record like every other commit.
    for path in before:
        newest = next(r for r in commit_records(spark, path) if r.get("run_date") == failing)
        assert newest["kind"] == "rollback" and newest["run_id"] == f"failing-{failing}", path
        assert newest["config_hash"] == cfg.fingerprint(), path
    assert already_published(spark, cfg, read(spark, cfg, "customers", other))


def test_a_failed_row_accounting_on_the_first_night_leaves_nothing_published(
    spark, tmp_path
) -> None:
    cfg = make_config(tmp_path)
    generate_landing(cfg.landing, RUN_DATE, rows=30, seed=15)
    published_then_refused(spark, cfg, RUN_DATE)
    layout = Layout.of(cfg)
    assert _dates(spark, layout.table("customers")) == {}
    assert _dates(spark, layout.quarantine("customers")) == {}
