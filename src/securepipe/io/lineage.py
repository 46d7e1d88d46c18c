"""OpenLineage run events (START, then COMPLETE or FAIL) for lineage servers such as Marquez,
DataHub or Airflow's lineage view, sent with the `openlineage-python` client.

Inputs are the landing files (their SHA-256 as the dataset version); outputs the published,
quarantine and role tables (their Delta version); column lineage names the operator that
protected each published column; the `securepipe_compliance` run facet carries the run's
compliance record (run id, config hash, key versions, gate verdicts). Names, versions, counts and
verdicts only: never a data value. A lineage server that is down never fails a run.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, ClassVar
from urllib.parse import urlparse

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    InputDataset,
    Job,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
)
from openlineage.client.facet_v2 import (
    RunFacet,
    column_lineage_dataset,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    nominal_time_run,
    output_statistics_output_dataset,
)
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Transport

from securepipe import __version__
from securepipe.config import LineageConfig, TableConfig
from securepipe.protect.registry import operator_for

__all__ = [
    "COMPLIANCE_FACET",
    "ComplianceRunFacet",
    "LineageEmitter",
    "OutputTable",
    "compliance_facet_schema",
    "dataset_id",
    "lineage_run_id",
]

_log = logging.getLogger(__name__)

PRODUCER = f"urn:securepipe:{__version__}"
COMPLIANCE_FACET = "securepipe_compliance"
_SCHEMA_FILE = "ComplianceRunFacet.json"


def compliance_facet_schema() -> dict[str, Any]:
    """The JSON schema of the `securepipe_compliance` facet (shipped in the package)."""
    text = resources.files("securepipe.io").joinpath("schemas", _SCHEMA_FILE).read_text()
    return dict(json.loads(text))


@attr.define
class ComplianceRunFacet(RunFacet):
    """The run's compliance record: what the Delta commits hold, without any value (field names
    in camelCase, as OpenLineage's own facets)."""

    runId: str
    runDate: str
    status: str
    configHash: str
    keyVersions: dict[str, int] = attr.field(factory=dict)
    gates: dict[str, dict[str, Any]] = attr.field(factory=dict)

    _additional_skip_redact: ClassVar[list[str]] = [
        "runId",
        "runDate",
        "status",
        "configHash",
        "keyVersions",
        "gates",
    ]

    @staticmethod
    def _get_schema() -> str:
        return f"urn:securepipe:schema:{_SCHEMA_FILE}"


def lineage_run_id(run_id: str) -> str:
    """The OpenLineage run id (a UUID) of a securepipe run id, the same on every event."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"securepipe:run:{run_id}"))


def dataset_id(uri: str) -> tuple[str, str]:
    """(namespace, name) of a file or table location, after OpenLineage's naming: `file` and the
    absolute path for local files, `s3://bucket` and the key for S3."""
    parsed = urlparse(uri)
    if parsed.scheme in ("s3", "s3a", "s3n"):
        return f"s3://{parsed.netloc}", parsed.path.lstrip("/")
    if parsed.scheme in ("", "file"):
        return "file", parsed.path or uri
    return f"{parsed.scheme}://{parsed.netloc}", parsed.path


@dataclass(frozen=True)
class OutputTable:
    """A table a run wrote: where, its Delta version, and the rows it added."""

    location: str
    version: int
    rows: int | None = None
    columns: Mapping[str, column_lineage_dataset.Fields] = field(default_factory=dict)


def column_lineage(
    table_cfg: TableConfig, inputs: Sequence[InputDataset]
) -> dict[str, column_lineage_dataset.Fields]:
    """For each published column, the landing column it comes from and the operator that
    protected it (`masking` when the published value is not the landing value)."""
    out = {}
    for name, column in table_cfg.columns.items():
        op = operator_for(column)
        if op.removes_column:
            continue
        key = op.key_name(column.protect.params)
        description = f"securepipe {op.name}" + (f" (key {key})" if key else "")
        transformation = column_lineage_dataset.Transformation(
            type="DIRECT",
            subtype="IDENTITY" if op.passes_value else "TRANSFORMATION",
            description=description,
            masking=not op.passes_value,
        )
        out[name] = column_lineage_dataset.Fields(
            inputFields=[
                column_lineage_dataset.InputField(
                    namespace=i.namespace, name=i.name, field=name, transformations=[transformation]
                )
                for i in inputs
            ]
        )
    return out


def input_datasets(files: Sequence[Mapping[str, Any]]) -> list[InputDataset]:
    """The landing files, each with its SHA-256 as dataset version when it was computed."""
    out = []
    for f in files:
        namespace, name = dataset_id(str(f["path"]))
        facets: dict[str, Any] = {}
        if f.get("sha256"):
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=f"sha256:{f['sha256']}"
            )
        out.append(InputDataset(namespace=namespace, name=name, facets=facets))
    return out


def output_datasets(tables: Sequence[OutputTable]) -> list[OutputDataset]:
    """The written tables with their Delta versions, row counts and column lineage."""
    out = []
    for t in tables:
        namespace, name = dataset_id(t.location)
        facets: dict[str, Any] = {
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(t.version)
            )
        }
        if t.columns:
            facets["columnLineage"] = column_lineage_dataset.ColumnLineageDatasetFacet(
                fields=dict(t.columns)
            )
        output_facets: dict[str, Any] = {}
        if t.rows is not None:
            output_facets["outputStatistics"] = (
                output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=t.rows)
            )
        out.append(
            OutputDataset(namespace=namespace, name=name, facets=facets, outputFacets=output_facets)
        )
    return out


def _transport(cfg: LineageConfig) -> Transport:
    if cfg.transport == "file":
        assert cfg.path is not None  # checked by LineageConfig
        return FileTransport(FileConfig(log_file_path=cfg.path, append=True))
    assert cfg.url is not None
    # Few retries: a lineage server that is down must not hold the night up.
    return HttpTransport(
        HttpConfig(
            url=cfg.url,
            endpoint=cfg.endpoint,
            timeout=cfg.timeout_seconds,
            retry={"total": 1, "connect": 1, "read": 1, "backoff_factor": 0.2},
        )
    )


class LineageEmitter:
    """Emits one run's events; every failure to deliver is a warning, never an error."""

    def __init__(self, cfg: LineageConfig, job: str, run_id: str, run_date: str) -> None:
        self._cfg = cfg
        self._job = job
        self._run_id = run_id
        self._run_date = run_date
        self._client: OpenLineageClient | None = None
        try:
            self._client = OpenLineageClient(transport=_transport(cfg))
        except Exception as exc:  # lineage must never fail the run
            _log.warning("lineage disabled for this run: %s", type(exc).__name__)

    def start(self) -> None:
        """The START event: the job, the run and its nominal date."""
        self._emit(RunState.START, self._run_facets(), [], [])

    def finish(
        self,
        state: RunState,
        inputs: Sequence[InputDataset],
        outputs: Sequence[OutputDataset],
        compliance: ComplianceRunFacet,
        error: str = "",
    ) -> None:
        """COMPLETE or FAIL, with inputs, outputs and the compliance record."""
        facets = {**self._run_facets(), COMPLIANCE_FACET: compliance}
        if error:
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=error, programmingLanguage="python"
            )
        self._emit(state, facets, inputs, outputs)

    def _run_facets(self) -> dict[str, RunFacet]:
        return {
            "nominalTime": nominal_time_run.NominalTimeRunFacet(
                nominalStartTime=f"{self._run_date}T00:00:00Z"
            )
        }

    def _emit(
        self,
        state: RunState,
        run_facets: Mapping[str, RunFacet],
        inputs: Sequence[InputDataset],
        outputs: Sequence[OutputDataset],
    ) -> None:
        if self._client is None:
            return
        event = RunEvent(
            eventType=state,
            eventTime=datetime.now(UTC).isoformat(timespec="milliseconds"),
            run=Run(runId=lineage_run_id(self._run_id), facets=dict(run_facets)),
            job=Job(
                namespace=self._cfg.namespace,
                name=self._job,
                facets={
                    "jobType": job_type_job.JobTypeJobFacet(
                        processingType="BATCH", integration="SECUREPIPE", jobType="JOB"
                    )
                },
            ),
            inputs=list(inputs),
            outputs=list(outputs),
            producer=PRODUCER,
        )
        try:
            self._client.emit(event)
        except Exception as exc:  # lineage must never fail the run
            _log.warning(
                "lineage event %s of run %s not delivered: %s (the run itself is unaffected)",
                state.value,
                self._run_id,
                type(exc).__name__,
                extra={"event": "lineage_emit_failed"},
            )
