"""An `s3a://` lakehouse: the nightly job end to end against an S3 endpoint on 127.0.0.1
(`moto_server`), credentials from the environment only, read back by an independent reader."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from securepipe.errors import ConfigError
from securepipe.io.generate import generate_landing
from tests.builders import load_cfg, write_config

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent / "securepipe"
DAY = "2026-10-05"
BUCKET = "securepipe-lake"


def _s3a_conf(endpoint: str) -> dict[str, str]:
    return {
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": "eu-west-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    }


@pytest.fixture
def s3(moto_server: str) -> dict[str, Any]:
    """A bucket on the moto server and random credentials (moto accepts any)."""
    import boto3

    creds = {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
        "AWS_REGION": "eu-west-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="eu-west-1",
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return {"endpoint": moto_server, "creds": creds, "client": client}


def test_nightly_publishes_delta_tables_to_s3a_with_env_credentials(
    tmp_path: Path, s3: dict[str, Any]
) -> None:
    def to_s3(doc: dict[str, Any]) -> None:
        doc["lakehouse"] = f"s3a://{BUCKET}/lakehouse"
        doc["spark"]["conf"] = _s3a_conf(s3["endpoint"])

    config = write_config(tmp_path, to_s3)
    generate_landing(tmp_path / "landing", DAY, rows=80, seed=7)
    env = {
        **os.environ,
        **s3["creds"],
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SECUREPIPE_LOG_FORMAT": "json",
    }
    proc = subprocess.run(
        [str(BIN), "run", "--config", str(config), "--date", DAY, "--tables", "customers"],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    # The Delta log, the data, the quarantine, the role tables and the audit log are objects.
    keys = {
        obj["Key"]
        for page in s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for obj in page.get("Contents", [])
    }
    log = sorted(k for k in keys if k.startswith("lakehouse/tables/customers/_delta_log/"))
    assert "lakehouse/tables/customers/_delta_log/00000000000000000000.json" in log
    for prefix in ("quarantine/customers", "access/analyst/customers", "_audit/runs", "reports"):
        assert any(k.startswith(f"lakehouse/{prefix}/") for k in keys), prefix

    # An independent reader (delta-rs) reads the published table straight from the bucket.
    from deltalake import DeltaTable

    table = DeltaTable(
        f"s3://{BUCKET}/lakehouse/tables/customers",
        storage_options={
            "AWS_ENDPOINT_URL": s3["endpoint"],
            "AWS_REGION": "eu-west-1",
            "AWS_ACCESS_KEY_ID": s3["creds"]["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3["creds"]["AWS_SECRET_ACCESS_KEY"],
            "AWS_ALLOW_HTTP": "true",
            "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
        },
    )
    data = table.to_pyarrow_table()
    assert data.num_rows == 80
    assert table.history(1)[0]["userMetadata"]  # the compliance record travels with the commit
    ssn = data.column("ssn").to_pylist()
    assert all(len(v) == 11 for v in ssn if v is not None)  # format-preserving tokens, not clear

    # Credentials only ever lived in the environment: not in the config, not in any output.
    secret = s3["creds"]["AWS_SECRET_ACCESS_KEY"]
    assert secret not in config.read_text()
    assert secret not in proc.stdout + proc.stderr
    assert s3["creds"]["AWS_ACCESS_KEY_ID"] not in proc.stdout + proc.stderr


def test_credentials_in_the_spark_configuration_are_refused(tmp_path: Path) -> None:
    from pyspark.sql import SparkSession

    from securepipe.spark import configure_builder

    def leak(doc: dict[str, Any]) -> None:
        doc["lakehouse"] = f"s3a://{BUCKET}/lakehouse"
        doc["spark"]["conf"] = {"spark.hadoop.fs.s3a.secret.key": "not-a-real-secret"}

    cfg = load_cfg(write_config(tmp_path, leak))
    with pytest.raises(ConfigError, match=r"fs\.s3a\.secret\.key.*environment") as err:
        configure_builder(SparkSession.builder, cfg.spark, cfg.lakehouse)
    assert "not-a-real-secret" not in str(err.value)


def test_an_s3_scheme_without_a_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = write_config(tmp_path, lambda doc: doc.update(lakehouse="s3://bucket/lake"))
    with pytest.raises(ConfigError, match=r"lakehouse.*use s3a://"):
        load_cfg(path)
    assert yaml.safe_load(path.read_text())["lakehouse"] == "s3://bucket/lake"
