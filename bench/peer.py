"""The job a data engineer would write by hand with Spark's built-ins: securepipe's peer in
`make bench` (bench/shipped.py runs it beside securepipe and a plain CSV -> Delta job).

Same landing files and the same outputs as the shipped configuration (conf/pipeline.yaml and
conf/access/roles.yaml), built only from what Spark, Delta and Great Expectations offer:

* read each CSV with its declared schema; rows that do not parse go to quarantine;
* personal columns: `aes_encrypt(..., 'GCM')` under one column key for the encrypted ones and
  for those a role decrypts (`phone`), salted `sha2(…, 256)` tokens for the others (`email`,
  `card_number`; `ssn`, which securepipe keeps format-preserving: Spark has no FF1);
* the shipped rules: the quarantine rules as row predicates (rows aside with a reason, their
  raw record encrypted), the whole suite validated by Great Expectations on the batch before
  anything is written (a `fail` rule stops the table);
* published and quarantine Delta tables partitioned by `run_date` (`replaceWhere` of the date);
* the role tables of the shipped policy (row filter, hidden columns, masks, the support role's
  decrypted names and phones), one `replaceWhere` write each.

What it does not do, and securepipe does: per-subject keys (crypto-shredding), key versions and
rotation, a leak scan, row accounting, compliance records, k-anonymity of the analyst's table,
an audit table, erasure. The difference in time is the price of those.
"""

from __future__ import annotations

import os
import time
from typing import Any

import great_expectations as gx
import yaml
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

PARTITION = "run_date"
ENCRYPT = {
    "customers": ("full_name", "date_of_birth", "street_address", "phone"),
    "transactions": (),
}
TOKENS = {"customers": ("email", "card_number", "ssn"), "transactions": ("card_number",)}


def _replace_date(df: DataFrame, path: str, day: str) -> None:
    (
        df.write.format("delta")
        .mode("overwrite")
        .partitionBy(PARTITION)
        .option("replaceWhere", f"{PARTITION} = DATE'{day}'")
        .save(path)
    )


def _quarantine_rules(gate: dict[str, Any]) -> list[tuple[str, Column]]:
    """(reason, predicate that holds for a bad row) of each `quarantine` rule of a suite."""
    rules = []
    for e in gate["expectations"]:
        if e["action"] != "quarantine":
            continue
        kw, col = e["kwargs"], F.col(e["kwargs"].get("column", ""))
        name = e["expectation"]
        if name == "expect_column_values_to_be_in_set":
            bad = col.isNotNull() & ~col.isin(kw["value_set"])
        elif name == "expect_column_values_to_match_regex":
            bad = col.isNotNull() & ~col.rlike(kw["regex"])
        elif name == "expect_column_values_to_be_between":
            low = col <= kw["min_value"] if kw.get("strict_min") else col < kw["min_value"]
            bad = col.isNotNull() & low
        else:
            raise ValueError(f"no hand-written predicate for {name}")
        rules.append((e["reason"], bad))
    return rules


def _validate(spark: SparkSession, df: DataFrame, gate: dict[str, Any], name: str) -> None:
    """The suite with Great Expectations on the batch; a failed `fail` rule stops the table."""
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_spark(name=f"peer_{name}")
    batch = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("b")
    suite = gx.ExpectationSuite(name=name)
    for e in gate["expectations"]:
        cls = "".join(w.capitalize() for w in e["expectation"].split("_"))
        suite.add_expectation(getattr(gx.expectations, cls)(**e["kwargs"]))
    result = batch.get_batch(batch_parameters={"dataframe": df}).validate(suite)
    for e, r in zip(gate["expectations"], result.results, strict=True):
        if e["action"] == "fail" and not r.success:
            raise SystemExit(f"{name}: {e['expectation']} failed")


def run_table(
    spark: SparkSession,
    doc: dict[str, Any],
    conf_dir: str,
    landing: str,
    table: str,
    day: str,
    out: str,
) -> dict[str, int]:
    """Read, validate, protect and publish one table; returns its counts."""
    tcfg = doc["tables"][table]
    schema = ", ".join(f"{c} {v['type']}" for c, v in tcfg["columns"].items())
    path = os.path.join(landing, table, day)
    raw = (
        spark.read.option("header", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", "_corrupt")
        .schema(f"{schema}, _corrupt string")
        .csv(path)
    )
    key, salt = os.urandom(32), os.urandom(16)  # a real job would read them from a vault
    gate_name = tcfg["gates"][0]
    with open(os.path.join(conf_dir, "gates", f"{gate_name}.yaml")) as fh:
        gate = yaml.safe_load(fh)
    bad_parse = F.col("_corrupt").isNotNull() | F.col(tcfg["key"]).isNull()
    rules = _quarantine_rules(gate)
    reason = F.when(bad_parse, F.lit("UNPARSEABLE"))
    for code, predicate in rules:
        reason = reason.when(predicate, F.lit(code))
    batch = raw.withColumn("_reason", reason).withColumn(PARTITION, F.lit(day).cast("date"))
    batch = batch.cache()
    good = batch.where(F.col("_reason").isNull())
    _validate(spark, good.drop("_corrupt", "_reason"), gate, gate_name)
    protected = good
    for column in ENCRYPT[table]:
        value = F.col(column).cast("string")
        protected = protected.withColumn(column, F.aes_encrypt(value, F.lit(key), F.lit("GCM")))
    for column in TOKENS[table]:
        token = F.sha2(F.concat(F.lit(salt), F.col(column).cast("string").cast("binary")), 256)
        protected = protected.withColumn(column, token)
    protected = protected.drop("_corrupt", "_reason")
    record = F.to_json(F.struct(*[F.col(c) for c in tcfg["columns"]], F.col("_corrupt")))
    quarantined = batch.where(F.col("_reason").isNotNull()).select(
        F.col(tcfg["key"]),
        F.col("_reason").alias("reason"),
        F.aes_encrypt(record, F.lit(key), F.lit("GCM")).alias("raw_record"),
        F.col(PARTITION),
    )
    _replace_date(protected, f"{out}/tables/{table}", day)
    _replace_date(quarantined, f"{out}/quarantine/{table}", day)
    counts = {"read": batch.count(), "quarantined": quarantined.count()}
    batch.unpersist()
    published = (
        spark.read.format("delta")
        .load(f"{out}/tables/{table}")
        .where(F.col(PARTITION) == F.lit(day).cast("date"))
    )
    roles(published, table, key, day, out)
    counts["published"] = counts["read"] - counts["quarantined"]
    return counts


def roles(published: DataFrame, table: str, key: bytes, day: str, out: str) -> None:
    """The shipped policy's role tables of `table` as hand-written selects."""
    views: dict[str, DataFrame] = {}
    if table == "customers":
        views["analyst"] = published.where(F.col("region") == "EU").select(
            "customer_id",
            "email",
            "country",
            "region",
            (F.floor(F.col("balance") / 1000) * 1000).alias("balance"),
            F.year("signup_ts").alias("signup_ts"),
            PARTITION,
        )
        views["support"] = published.select(
            "customer_id",
            F.aes_decrypt("full_name", F.lit(key), F.lit("GCM")).cast("string").alias("full_name"),
            F.aes_decrypt("phone", F.lit(key), F.lit("GCM")).cast("string").alias("phone"),
            "email",
            "city",
            "country",
            "region",
            PARTITION,
        )
    else:
        views["analyst"] = published
        views["fraud"] = published.where(F.col("amount") >= 1000)
    for role, view in views.items():
        _replace_date(view, f"{out}/access/{role}/{table}", day)


def run(spark: SparkSession, config: str, landing: str, day: str, out: str) -> dict[str, Any]:
    """Both tables of the shipped configuration at `config` on the files under `landing`;
    counts and seconds per table."""
    with open(config) as fh:
        doc = yaml.safe_load(fh)
    result: dict[str, Any] = {}
    for table in ("customers", "transactions"):
        start = time.perf_counter()
        counts = run_table(spark, doc, os.path.dirname(config), landing, table, day, out)
        result[table] = {**counts, "seconds": round(time.perf_counter() - start, 2)}
    return result
