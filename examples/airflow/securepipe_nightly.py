"""Apache Airflow (3.x) DAGs: the securepipe nightly job at 02:30 UTC, and weekly maintenance.

Exit-code contract of the jobs, and what the tasks do with it:

* 0 ok → the task succeeds.
* 2 a compliance gate refused a batch → the task FAILS AT ONCE, WITHOUT A RETRY (a retry would
  refuse the same batch again): nothing was published for it. Fix the data or the policy, then
  clear the task; re-runs of a date are idempotent.
* 1 any other error → the task fails and is retried (a run lock stops a second run of the same
  date, and an interrupted run leaves the tables at their previous version).

The run date is explicit: the nightly DAG's data interval is the previous 02:30 → this 02:30
(`CronDataIntervalTimetable`), so the run at 02:30 on the 29th processes the 28th
(`data_interval_start`), whatever Airflow's default timetable is.

Once, before the first night, on the host that holds the key store: `securepipe keys init` (the
job never creates a master key; without one it exits 1 naming the path it looked at). Relative
paths in the configuration follow the configuration file, not the worker's directory.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from airflow.exceptions import AirflowException, AirflowFailException
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

CONF = "/opt/securepipe/conf/pipeline.yaml"
GATE_REFUSED = 2  # securepipe's exit code when a compliance gate refused a batch
COMMON: dict[str, Any] = {
    "conn_id": "spark_default",
    "packages": "io.delta:delta-spark_4.1_2.13:4.4.0,io.delta:delta-storage:4.4.0",
    "py_files": "/opt/securepipe/dist/securepipe-0.1.0-py3-none-any.whl",
    "files": CONF,
    "conf": {"spark.pyspark.python": "/opt/securepipe/.venv/bin/python"},
}


def exit_code(operator: SparkSubmitOperator, exc: BaseException) -> int | None:
    """The exit code of the spark-submit an operator ran (from its hook's process, or from the
    provider's "Error code is: N" message), None if unknown."""
    process = getattr(getattr(operator, "_hook", None), "_submit_sp", None)
    code = getattr(process, "returncode", None)
    if isinstance(code, int):
        return code
    found = re.search(r"Error code is: (-?\d+)", str(exc))
    return int(found.group(1)) if found else None


class SecurepipeSubmit(SparkSubmitOperator):
    """spark-submit of a securepipe job: a gate refusal (exit 2) fails the task without retries;
    any other failure stays retryable."""

    def execute(self, context: Any) -> Any:
        try:
            return super().execute(context)
        except AirflowFailException:
            raise
        except AirflowException as exc:
            if exit_code(self, exc) == GATE_REFUSED:
                raise AirflowFailException(
                    "securepipe: a compliance gate refused the batch (exit 2); nothing was "
                    "published for it. Fix the data or the policy, then clear this task."
                ) from exc
            raise


with DAG(
    dag_id="securepipe_nightly",
    schedule=CronDataIntervalTimetable("30 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 11, 1),
    catchup=False,  # use `securepipe run --from D1 --to D2` for backfills
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    tags=["securepipe"],
) as nightly_dag:
    SecurepipeSubmit(
        task_id="nightly",
        application="/opt/securepipe/jobs/nightly.py",
        application_args=["--config", CONF, "--date", "{{ data_interval_start | ds }}"],
        **COMMON,
    )

with DAG(
    dag_id="securepipe_maintenance",
    schedule="0 5 * * 0",  # Sundays 05:00 UTC: OPTIMIZE, retention properties, VACUUM
    start_date=datetime(2026, 11, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=30)},
    tags=["securepipe"],
) as maintenance_dag:
    SecurepipeSubmit(
        task_id="maintenance",
        application="/opt/securepipe/jobs/maintenance.py",
        application_args=["--config", CONF],
        **COMMON,
    )
