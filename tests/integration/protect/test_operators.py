"""Every operator on Spark: nulls, unicode, formats, determinism, reversal and its refusals, and
no plaintext key in the plan, the configuration, the logs or the errors."""

from __future__ import annotations

import base64
import logging
import re
import shutil
from pathlib import Path

import pytest
from pyspark.errors import PythonException
from pyspark.sql import functions as F

from securepipe.config import KeyStoreConfig, PipelineConfig, TableConfig
from securepipe.crypto import keycache
from securepipe.crypto.keyring import Keyring
from securepipe.errors import KeyAccessError, PolicyError
from securepipe.pipeline import resolve_keys
from securepipe.pipeline.load import check_pipeline
from securepipe.pipeline.rotation import reencrypt_table
from securepipe.protect import protect_columns
from securepipe.protect.reveal import reveal
from tests.builders import CONF, load_cfg, provision_keys

pytestmark = pytest.mark.spark

ALL_OPS = {
    "id": {"type": "string", "classification": "identifier", "protect": {"op": "keep"}},
    "name": {"type": "string", "classification": "pii", "protect": {"op": "encrypt", "key": "pii"}},
    "email": {
        "type": "string",
        "classification": "pii",
        "protect": {"op": "tokenize", "kind": "hmac", "key": "tok"},
    },
    "email2": {
        "type": "string",
        "classification": "pii",
        "protect": {"op": "tokenize", "kind": "hmac", "key": "tok2"},
    },
    "phone": {
        "type": "string",
        "classification": "pii",
        "protect": {"op": "tokenize", "kind": "daead", "key": "siv"},
    },
    "ssn": {
        "type": "string",
        "classification": "pii",
        "protect": {"op": "fpe", "alphabet": "digits", "key": "fpe"},
    },
    "ssn_last4": {
        "type": "string",
        "classification": "pii",
        "protect": {"op": "partial", "show_last": 4},
    },
    "note": {"type": "string", "classification": "sensitive", "protect": {"op": "redact"}},
    "city": {"type": "string", "classification": "internal", "protect": {"op": "nullify"}},
    "dob": {"type": "date", "classification": "pii", "protect": {"op": "generalize", "to": "year"}},
    "dob_enc": {
        "type": "date",
        "classification": "pii",
        "protect": {"op": "encrypt", "key": "pii"},
    },
    "balance": {
        "type": "decimal(18,2)",
        "classification": "confidential",
        "protect": {"op": "bucket", "width": 1000},
    },
    "age": {
        "type": "int",
        "classification": "confidential",
        "protect": {"op": "bucket", "boundaries": [18, 65]},
    },
    "secret": {"type": "string", "classification": "pii", "protect": {"op": "drop"}},
}
ROWS = [
    (
        "1",
        "Zoë Ñúñez",
        "zoe@example.com",
        "zoe@example.com",
        "+1-202-555-0101",
        "123-45-6789",
        "123-45-6789",
        "diagnosis A",
        "Köln",
        "1985-03-02",
        "1985-03-02",
        "1234.50",
        "17",
        "x",
    ),
    (
        "2",
        "山田太郎 🙂",
        "taro@example.jp",
        "taro@example.jp",
        "+81-3-5555-0102",
        "987-65-4321",
        "987-65-4321",
        "diagnosis B",
        "東京",
        "1990-12-31",
        "1990-12-31",
        "-5.00",
        "70",
        "y",
    ),
    ("3", None, None, None, None, None, None, None, None, None, None, None, None, None),
    (
        "4",
        "",
        "a@b.co",
        "a@b.co",
        "555-0100-99",
        "000-00-0001",
        "12",
        "",
        "",
        "2000-01-01",
        "2000-01-01",
        "0.00",
        "18",
        "",
    ),
    (
        "5",
        "x" * 5000,
        "zoe@example.com",
        "zoe@example.com",
        "+1-202-555-0101",
        "123-45-6789",
        "1",
        "n",
        "c",
        "1970-01-01",
        "1970-01-01",
        "999.99",
        "64",
        "z",
    ),
]


@pytest.fixture(scope="module")
def setup(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    base = load_cfg(CONF)
    doc = base.model_dump(mode="json", exclude={"source_file"})
    doc["keys"] = {
        "pii": {"type": "aead"},
        "tok": {"type": "hmac"},
        "tok2": {"type": "hmac"},
        "siv": {"type": "daead"},
        "fpe": {"type": "fpe"},
        "q": {"type": "aead"},
    }
    doc["keystore"] = {"provider": "local", "path": str(tmp / "secrets")}
    doc["erasure"] = None
    doc["lakehouse"] = str(tmp / "lakehouse")
    doc["tables"] = {
        "people": {
            "source": {"path": "people/{run_date}"},
            "key": "id",
            "quarantine_key": "q",
            "columns": ALL_OPS,
        }
    }
    cfg = PipelineConfig.model_validate({**doc, "source_file": "test"})
    check_pipeline(cfg)
    keycache.clear()
    provision_keys(cfg.keystore)
    keys = resolve_keys(cfg, ["people"])
    schema = ", ".join(f"{c} string" for c in ALL_OPS)
    raw = spark.createDataFrame(ROWS, schema)
    typed = raw.select(*[F.col(c).cast(str(v["type"])).alias(c) for c, v in ALL_OPS.items()])
    table_cfg: TableConfig = cfg.tables["people"]
    out = protect_columns(typed.repartition(3), "people", table_cfg, keys).cache()
    return {
        "cfg": cfg,
        "keys": keys,
        "typed": typed,
        "out": out,
        "table_cfg": table_cfg,
        "rows": {r["id"]: r for r in typed.collect()},
        "prot": {r["id"]: r for r in out.collect()},
    }


def test_dropped_column_is_gone_and_types_are_as_declared(setup) -> None:
    dtypes = dict(setup["out"].dtypes)
    assert "secret" not in dtypes
    assert dtypes["name"] == "binary" and dtypes["dob_enc"] == "binary"
    assert dtypes["email"] == dtypes["phone"] == dtypes["ssn"] == "string"


def test_nulls_stay_null_for_every_operator(setup) -> None:
    row = setup["prot"]["3"]
    assert all(row[c] is None for c in row.asDict() if c != "id")


def test_masks_give_the_documented_outputs(setup) -> None:
    p = setup["prot"]
    assert p["1"]["ssn_last4"] == "***-**-6789"
    assert p["4"]["ssn_last4"] == "**"  # not longer than show_last: fully masked
    assert p["1"]["note"] == "[REDACTED]"
    assert p["1"]["city"] is None
    assert p["1"]["dob"] == "1985"
    assert p["1"]["balance"] == "1000-2000" and p["2"]["balance"] == "-1000-0"
    assert (p["1"]["age"], p["2"]["age"], p["4"]["age"], p["5"]["age"]) == (
        "<18",
        ">=65",
        "18-65",
        "18-65",
    )


def test_fpe_keeps_the_format(setup) -> None:
    for i in ("1", "2", "4", "5"):
        token, original = setup["prot"][i]["ssn"], setup["rows"][i]["ssn"]
        assert re.fullmatch(r"\d{3}-\d{2}-\d{4}", token) and token != original


def test_tokens_are_deterministic_across_partitions_and_differ_across_keys(setup) -> None:
    p = setup["prot"]
    assert p["1"]["email"] == p["5"]["email"]  # same value, other partition: joinable
    assert p["1"]["phone"] == p["5"]["phone"] and p["1"]["ssn"] == p["5"]["ssn"]
    assert p["1"]["email"] != p["1"]["email2"]  # other key
    again = protect_columns(
        setup["typed"].coalesce(1), "people", setup["table_cfg"], setup["keys"]
    ).collect()
    assert {r["id"]: r["email"] for r in again} == {k: v["email"] for k, v in p.items()}


def test_authorised_reveal_round_trips_every_reversible_column(setup) -> None:
    cols = ["name", "phone", "ssn", "dob_enc"]
    out = reveal(setup["out"], "people", setup["table_cfg"], setup["keys"], cols).collect()
    for row in out:
        original = setup["rows"][row["id"]]
        for c in cols:
            assert row[c] == original[c], c


def test_reveal_refuses_irreversible_columns_and_missing_keys(setup) -> None:
    with pytest.raises(PolicyError, match="column 'email' of table 'people' is protected by"):
        reveal(setup["out"], "people", setup["table_cfg"], setup["keys"], ["email"])
    granted = {k: v for k, v in setup["keys"].items() if k != "pii"}
    with pytest.raises(KeyAccessError, match="no access to key 'pii'"):
        reveal(setup["out"], "people", setup["table_cfg"], granted, ["name"])


def _decrypt_error(df) -> str:
    with pytest.raises(PythonException) as err:
        df.collect()
    return str(err.value)


def test_tampered_ciphertext_raises_decryption_error_naming_the_column(setup) -> None:
    tampered = (
        setup["out"]
        .where("id = '1'")
        .withColumn(
            "name",
            F.concat(F.substring("name", 1, 20), F.lit(b"\x00"), F.expr("substring(name, 22)")),
        )
    )
    msg = _decrypt_error(reveal(tampered, "people", setup["table_cfg"], setup["keys"], ["name"]))
    assert "DecryptionError: a value of people.name could not be decrypted" in msg
    assert "Zo" not in msg


def test_ciphertext_copied_into_another_column_fails(setup) -> None:
    moved = setup["out"].where("id = '1'").withColumn("dob_enc", F.col("name"))
    msg = _decrypt_error(reveal(moved, "people", setup["table_cfg"], setup["keys"], ["dob_enc"]))
    assert "a value of people.dob_enc could not be decrypted" in msg


def test_destroyed_key_version_cannot_decrypt(setup, tmp_path) -> None:
    copy = tmp_path / "secrets"
    shutil.copytree(setup["cfg"].keystore.path, copy)
    store = KeyStoreConfig(provider="local", path=str(copy))
    ring = Keyring(store)
    ring.rotate("siv")
    ring.destroy("siv", 1)
    handle = Keyring(store).handle("siv")
    assert handle.versions == [2]
    keys = {**setup["keys"], "siv": handle}
    msg = _decrypt_error(
        reveal(setup["out"].where("id = '1'"), "people", setup["table_cfg"], keys, ["phone"])
    )
    assert "a value of people.phone could not be decrypted" in msg


def test_no_key_material_in_plan_conf_or_logs(setup, spark, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = set()
    for handle in setup["keys"].values():
        for key in keycache.data_keys(handle).values():
            secrets |= {key.hex(), base64.b64encode(key).decode(), key.hex().upper()}
    master = (Path(setup["cfg"].keystore.path) / "master.key").read_text().strip()
    secrets.add(master)
    plan = setup["out"]._jdf.queryExecution().toString()
    revealed = reveal(setup["out"], "people", setup["table_cfg"], setup["keys"], ["name"])
    plan += revealed._jdf.queryExecution().toString()
    conf = "\n".join(f"{k}={v}" for k, v in spark.sparkContext.getConf().getAll())
    conf += "\n".join(f"{k}={v}" for k, v in spark.conf.getAll.items())
    revealed.collect()
    logs = caplog.text
    assert "securepipe_encrypt" in plan  # the plan was really captured
    for secret in secrets:
        assert secret not in plan
        assert secret not in conf
        assert secret not in logs


def test_reencrypt_moves_a_table_to_the_new_key_version(setup, spark, tmp_path) -> None:
    cfg = setup["cfg"]
    path = str(tmp_path / "people")
    setup["out"].write.format("delta").save(path)
    Keyring(cfg.keystore).rotate("pii")
    keycache.clear()
    keys = resolve_keys(cfg, ["people"])
    commit = reencrypt_table(spark, cfg, "people", path, keys, "test-run")
    assert commit.version == 1 and commit.rows_written == len(ROWS)
    df = spark.read.format("delta").load(path)
    headers = {bytes(r[0])[1:5] for r in df.where("name is not null").select("name").collect()}
    assert headers == {(2).to_bytes(4, "big")}
    out = reveal(df, "people", setup["table_cfg"], keys, ["name", "phone"]).collect()
    assert {r["id"]: r["name"] for r in out} == {k: v["name"] for k, v in setup["rows"].items()}
    old = spark.read.format("delta").option("versionAsOf", 0).load(path)
    old_headers = {bytes(r[0])[1:5] for r in old.where("name is not null").select("name").collect()}
    assert old_headers == {(1).to_bytes(4, "big")}


def _python_passes(df) -> list[str]:
    """The Python evaluation nodes of `df`'s executed plan (each is one trip to the workers)."""
    plan = df._jdf.queryExecution().executedPlan().toString()
    return [line for line in plan.splitlines() if "EvalPython" in line]


def test_every_operator_of_a_table_runs_in_one_python_pass(setup, spark) -> None:
    # Six cryptographic columns (AES-GCM twice, HMAC twice, AES-SIV, FF1): one Arrow evaluation
    # node, so each row batch goes to a Python worker once, not once per operator family.
    protected = protect_columns(setup["typed"], "people", setup["table_cfg"], setup["keys"])
    passes = _python_passes(protected)
    assert len(passes) == 1, passes
    assert "ArrowEvalPython" in passes[0]
    for udf in ("securepipe_encrypt", "securepipe_hmac", "securepipe_daead", "securepipe_fpe"):
        assert udf in passes[0], udf
    stored = spark.createDataFrame(setup["out"].collect(), setup["out"].schema)
    revealed = reveal(stored, "people", setup["table_cfg"], setup["keys"], ["name", "phone", "ssn"])
    passes = _python_passes(revealed)
    assert len(passes) == 1, passes
    for udf in ("securepipe_decrypt", "securepipe_detokenize"):
        assert udf in passes[0], udf
