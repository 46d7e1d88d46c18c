"""Apache Airflow DAG: the securepipe nightly job at 02:30, then weekly maintenance.

Exit-code contract: 0 ok → task success; 2 a compliance gate refused a batch → the task fails
and nothing was published (fix the data or the policy, then clear the task to re-run: re-runs of
a date are idempotent); 1 any other error → the task fails (retries are safe: a run lock stops a
second run of the same date, and an interrupted run leaves the tables at their previous version).

Once, before the first night, on the host that holds the key store: `securepipe keys init` (the
job never creates a master key; without one it exits 1 naming the path it looked at).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

CONF = "/opt/securepipe/conf/pipeline.yaml"
COMMON = {
    "conn_id": "spark_default",
    "packages": "io.delta:delta-spark_4.1_2.13:4.4.0,io.delta:delta-storage:4.4.0",
    "py_files": "/opt/securepipe/dist/securepipe-0.1.0-py3-none-any.whl",
    "files": CONF,
    "conf": {"spark.pyspark.python": "/opt/securepipe/.venv/bin/python"},
}

with DAG(
    dag_id="securepipe_nightly",
    schedule="30 2 * * *",
    start_date=datetime(2026, 11, 1),
    catchup=False,  # use `securepipe run --from D1 --to D2` for backfills
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
) as dag:
    nightly = SparkSubmitOperator(
        task_id="nightly",
        application="/opt/securepipe/jobs/nightly.py",
        application_args=["--config", CONF, "--date", "{{ ds }}"],
        **COMMON,
    )
    maintenance = SparkSubmitOperator(
        task_id="maintenance",
        application="/opt/securepipe/jobs/maintenance.py",
        application_args=["--config", CONF],
        trigger_rule="all_success",
        **COMMON,
    )
    nightly >> maintenance
