"""Run inside the Airflow venv by tests/e2e/test_airflow.py: parse the example DAGs with a real
DagBag, render the nightly date for one run, and run each task's operator against a stand-in
`spark-submit` that exits with a given code. Prints one JSON document."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

from airflow.exceptions import AirflowException, AirflowFailException
from airflow.models.dagbag import DagBag

folder = sys.argv[1]
bag = DagBag(dag_folder=folder, include_examples=False)
out: dict = {"errors": {k: str(v)[-800:] for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "timetable": type(dag.timetable).__name__,
        "cron": dag.timetable.summary,
        "tasks": {
            t.task_id: {
                "type": type(t).__name__,
                "retries": t.retries,
                "args": list(getattr(t, "application_args", None) or []),
            }
            for t in dag.tasks
        },
    }
nightly = bag.dags.get("securepipe_nightly")
if nightly is not None:
    run_at = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
    interval = nightly.timetable.infer_manual_data_interval(run_after=run_at)
    env = nightly.get_template_env()
    args = nightly.get_task("nightly").application_args
    out["rendered"] = [env.from_string(a).render(data_interval_start=interval.start) for a in args]

sys.path.insert(0, folder)
import securepipe_nightly as dags  # noqa: E402

results = {}
for code in (0, 1, 2):
    os.environ["FAKE_SPARK_SUBMIT_EXIT"] = str(code)
    op = dags.SecurepipeSubmit(task_id=f"exit_{code}", application="/x/nightly.py")
    try:
        op.execute({})
        results[code] = "success"
    except AirflowFailException:
        results[code] = "failed, no retry"
    except AirflowException:
        results[code] = "failed, retried"
out["exit_codes"] = results
print("RESULT " + json.dumps(out))
