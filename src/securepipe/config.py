"""Typed configuration, loaded once and validated before Spark starts.

`load_config(path)` returns a frozen `PipelineConfig` or raises `ConfigError` whose message names
the file, the table and the column at fault. Every column of a source must be declared with a type,
a classification and a protection (fail closed); protections are checked by their operator
(`securepipe.protect.registry`) against the declared keys.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from securepipe.errors import ConfigError

__all__ = [
    "NAME_PATTERN",
    "AwsKmsConfig",
    "Classification",
    "ColumnConfig",
    "ComplianceConfig",
    "DetectorConfig",
    "ErasureConfig",
    "ExpectationSpec",
    "FilesConfig",
    "GateConfig",
    "KeyConfig",
    "KeyStoreConfig",
    "LineageConfig",
    "MonitoringConfig",
    "PipelineConfig",
    "Pkcs11Config",
    "ProtectSpec",
    "RetentionConfig",
    "SourceConfig",
    "SparkSettings",
    "TableConfig",
    "format_validation_error",
    "load_config",
    "read_yaml",
]

_TYPE_RE = re.compile(
    r"^(string|boolean|int|integer|long|bigint|double|float|date|timestamp|decimal\(\d{1,2},\d{1,2}\))$"
)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names that become paths or catalog identifiers (tables, columns, keys, roles, gates).
NAME_PATTERN = _NAME_RE


class Classification(StrEnum):
    """How sensitive a column is; `pii` and `sensitive` may never be published in clear."""

    PUBLIC = "public"
    INTERNAL = "internal"
    IDENTIFIER = "identifier"
    CONFIDENTIAL = "confidential"
    PII = "pii"
    SENSITIVE = "sensitive"

    @property
    def personal(self) -> bool:
        """True for classes whose values identify or describe a person."""
        return self in (Classification.PII, Classification.SENSITIVE)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProtectSpec(BaseModel):
    """`{op: <operator>, ...operator parameters}`; the operator validates its own parameters."""

    model_config = ConfigDict(extra="allow", frozen=True)

    op: str

    @property
    def params(self) -> dict[str, Any]:
        """Operator parameters (everything but `op`)."""
        return dict(self.model_extra or {})


class ColumnConfig(_Model):
    """One declared source column.

    `clear_text: true` exempts a published column from the PII leak scan (free text known to
    contain no personal data, e.g. merchant names); everything else string-typed is scanned.
    """

    type: str
    classification: Classification
    protect: ProtectSpec
    nullable: bool = True
    clear_text: bool = False

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        value = value.strip().lower().replace(" ", "")
        if not _TYPE_RE.match(value):
            raise ValueError(
                f"unsupported type {value!r}; use string, boolean, int, long, double, "
                "decimal(p,s), date or timestamp"
            )
        return value

    @property
    def spark_type(self) -> str:
        """The Spark SQL type name of the declared type."""
        return _SPARK_TYPE.get(self.type, self.type)


_SPARK_TYPE = {"integer": "int", "bigint": "long", "float": "double"}


class SourceConfig(_Model):
    """Where the landing files of one table are, relative to the landing root."""

    format: Literal["csv", "json", "parquet"] = "csv"
    path: str = Field(description="folder template under the landing root, with {run_date}")
    options: dict[str, str] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def _has_run_date(cls, value: str) -> str:
        if "{run_date}" not in value:
            raise ValueError("source path must contain {run_date}")
        return value


class TableConfig(_Model):
    """A table: its source, its business key and every column's classification and protection."""

    source: SourceConfig
    key: str
    quarantine_key: str = Field(
        description="aead key that encrypts the raw record of rejected rows in quarantine"
    )
    columns: dict[str, ColumnConfig]
    gates: list[str] = Field(default_factory=list, description="gate names from conf/gates/")
    subject: str | None = Field(
        default=None, description="column naming the data subject (crypto-shredding, erasure)"
    )
    erasure: Literal["complete", "partial"] = Field(
        default="complete",
        description=(
            "complete: every pii/sensitive column of a subject table is shredded with the "
            "subject's key; partial: some stay readable under column keys until VACUUM"
        ),
    )
    erasure_reason: str | None = Field(
        default=None, description="why `erasure: partial` is acceptable (required with it)"
    )

    @model_validator(mode="after")
    def _key_is_a_column(self) -> TableConfig:
        if self.key not in self.columns:
            raise ValueError(f"key column {self.key!r} is not declared under columns")
        return self


class ExpectationSpec(_Model):
    """One Great Expectations expectation of a gate and what to do when it fails."""

    expectation: str = Field(
        description="GX expectation name, e.g. expect_column_values_to_not_be_null"
    )
    kwargs: dict[str, Any] = Field(default_factory=dict)
    action: Literal["fail", "quarantine", "warn"] = "fail"
    reason: str | None = Field(default=None, description="reason code for quarantined rows")


class GateConfig(_Model):
    """A gate (`conf/gates/<name>.yaml`): a suite of expectations with actions."""

    name: str
    description: str = ""
    expectations: list[ExpectationSpec] = Field(min_length=1)
    source_file: str = ""


class DetectorConfig(_Model):
    """A PII detector of the leak scan: a Java regular expression, optionally verified by a
    checksum over each match (`luhn` for card numbers, `mod97` for IBANs)."""

    pattern: str
    luhn: bool = False
    checksum: Literal["luhn", "mod97"] | None = None
    enabled: bool = True


class ComplianceConfig(_Model):
    """Built-in compliance checks; `detectors` adds to or overrides the defaults by name."""

    detectors: dict[str, DetectorConfig] = Field(default_factory=dict)
    strict: bool = Field(
        default=False,
        description="also scan for bare 9-digit SSNs and 10-digit phone numbers (digits only, "
        "no separator): more false alarms on ids and amounts, fewer missed leaks",
    )


class KeyConfig(_Model):
    """A named data key; its type fixes which operators may use it.

    `aead`: AES-256-GCM (encrypt); `hmac`: HMAC-SHA256 (tokenize kind hmac); `daead`: AES-256-SIV
    (tokenize kind daead); `fpe`: AES-256 FF1 (fpe).
    """

    type: Literal["aead", "hmac", "daead", "fpe"]


class Pkcs11Config(_Model):
    """An HSM reached through a PKCS#11 module; the PIN is read from an environment variable."""

    module: str = "/usr/lib/softhsm/libsofthsm2.so"
    token_label: str
    key_label: str = "securepipe-kek"
    pin_env: str = "SECUREPIPE_PKCS11_PIN"


class AwsKmsConfig(_Model):
    """An AWS KMS key; credentials come from the environment (never from this file)."""

    key_id: str
    region: str = "eu-west-1"
    endpoint_url: str | None = None


class KeyStoreConfig(_Model):
    """Where the KEK lives (provider) and where the wrapped data keys are kept (path)."""

    provider: Literal["local", "pkcs11", "aws-kms"] = "local"
    path: str = "./.secrets"
    pkcs11: Pkcs11Config | None = None
    aws: AwsKmsConfig | None = None

    @model_validator(mode="after")
    def _provider_settings(self) -> KeyStoreConfig:
        if self.provider == "pkcs11" and self.pkcs11 is None:
            raise ValueError("provider 'pkcs11' needs a pkcs11: section")
        if self.provider == "aws-kms" and self.aws is None:
            raise ValueError("provider 'aws-kms' needs an aws: section")
        return self


class SparkSettings(_Model):
    """How `securepipe.spark.configure_builder` sets up a session."""

    master: str | None = "local[2]"
    app_name: str = "securepipe"
    jars: Literal["local", "packages", "provided"] = Field(
        default="local",
        description=(
            "local: add the jars in jars_dir (fetched by `make setup`, air-gapped friendly); "
            "packages: let Spark's Ivy resolve them; provided: spark-submit --packages/--jars did"
        ),
    )
    jars_dir: str = ".cache/jars"
    ivy_dir: str = ".cache/ivy"
    # Off unless asked for: the UI shows query plans and stage details of every run.
    ui_enabled: bool = False
    shuffle_partitions: int = Field(default=8, ge=1)
    conf: dict[str, str] = Field(default_factory=dict)
    allow_insecure: list[
        Literal["spark.authenticate", "spark.network.crypto.enabled", "spark.io.encryption.enabled"]
    ] = Field(
        default_factory=list,
        description="hardened settings a submission may turn off (spark-submit --conf X=false); "
        "any other submission that turns one off is refused",
    )


_CATALOG_NAME = r"^[a-z_][a-z0-9_]*$"


class CatalogConfig(_Model):
    """`catalog:`: also register the lakehouse's tables in the session catalog (a Hive
    metastore), one database per zone, so they can be queried and granted by name
    (`securepipe.customers`, `access_analyst.customers`). Paths keep working without it."""

    metastore: Literal["embedded", "external"] = Field(
        default="embedded",
        description=(
            "embedded: a Derby metastore in <lakehouse>/_catalog (local lakehouse, one process "
            "at a time); external: the Hive metastore that spark.conf or spark-submit --conf "
            "names (spark.hadoop.hive.metastore.uris)"
        ),
    )
    database: str = Field(default="securepipe", pattern=_CATALOG_NAME)
    quarantine_database: str = Field(default="securepipe_quarantine", pattern=_CATALOG_NAME)
    access_prefix: str = Field(
        default="access_",
        pattern=_CATALOG_NAME,
        description="role tables go to the database <access_prefix><role>",
    )


class ErasureConfig(_Model):
    """Keys of the subject key store: `kek` (aead) wraps subject keys, `index_key` (hmac)
    hashes subject ids."""

    kek: str
    index_key: str


class RetentionConfig(_Model):
    """How long old table versions stay readable (time travel) before VACUUM removes files."""

    vacuum_hours: int = Field(default=168, ge=0)
    log_retention_days: int = Field(default=7, ge=1)
    allow_below_safety: bool = False
    quarantine_days: int = Field(
        default=30,
        ge=1,
        description="`securepipe maintain` deletes quarantined rows of run dates older than "
        "this (their raw records included), then VACUUM removes their files",
    )


class FilesConfig(_Model):
    """The size of the files securepipe writes."""

    rows_per_file: int = Field(
        default=500_000,
        ge=1,
        description="each run date's partition of a published, quarantine or role table is "
        "written as ceil(rows / rows_per_file) files",
    )


class LineageConfig(_Model):
    """Where OpenLineage run events go: an HTTP endpoint (Marquez, DataHub, ...) or a file of
    JSON lines. Events hold names, versions, checksums and verdicts, never a value."""

    transport: Literal["http", "file"] = "http"
    url: str | None = Field(default=None, description="http: the lineage server's base URL")
    endpoint: str = "api/v1/lineage"
    path: str | None = Field(default=None, description="file: the JSON-lines file to append to")
    namespace: str = Field(default="securepipe", description="the job namespace")
    timeout_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _destination(self) -> LineageConfig:
        if self.transport == "http" and not self.url:
            raise ValueError("lineage transport 'http' needs a url")
        if self.transport == "file" and not self.path:
            raise ValueError("lineage transport 'file' needs a path")
        return self


class MonitoringConfig(_Model):
    """Metrics pushed to a Prometheus Pushgateway and written to a textfile, and lineage
    events. A monitoring system that is down never fails a run: it is logged as a warning."""

    pushgateway: str | None = Field(
        default=None, description="Pushgateway URL; SECUREPIPE_PUSHGATEWAY overrides it"
    )
    metrics_file: str | None = Field(
        default=None, description="text exposition file for node_exporter's textfile collector"
    )
    job: str = Field(default="securepipe", description="the `job` grouping label")
    timeout_seconds: float = Field(default=5.0, gt=0, description="per push, at most")
    key_rotation_days: int | None = Field(
        default=90,
        ge=1,
        description="rotation period of rotatable keys (aead, daead), exported for the alert",
    )
    lineage: LineageConfig | None = None


class PipelineConfig(_Model):
    """The whole validated configuration of a pipeline."""

    version: Literal[1] = 1
    lakehouse: str = "./lakehouse"
    landing: str = "./landing"
    lock_dir: str | None = Field(
        default=None,
        description=(
            "folder of the lakehouse and run locks; default <lakehouse>/_locks, or, for an "
            "object-store lakehouse, .cache/locks beside this configuration file (never the "
            "working directory: two jobs started in different directories must share it)"
        ),
    )
    keystore: KeyStoreConfig = KeyStoreConfig()
    spark: SparkSettings = SparkSettings()
    keys: dict[str, KeyConfig]
    tables: dict[str, TableConfig]
    compliance: ComplianceConfig = ComplianceConfig()
    retention: RetentionConfig = RetentionConfig()
    files: FilesConfig = FilesConfig()
    erasure: ErasureConfig | None = None
    gates: dict[str, GateConfig] = Field(default_factory=dict)
    monitoring: MonitoringConfig = MonitoringConfig()
    catalog: CatalogConfig | None = None
    source_file: str = ""

    @model_validator(mode="after")
    def _embedded_metastore_is_local(self) -> PipelineConfig:
        remote = "://" in self.lakehouse and not self.lakehouse.startswith("file:")
        if self.catalog and self.catalog.metastore == "embedded" and remote:
            raise ValueError(
                "catalog.metastore embedded keeps a Derby database in the lakehouse, which "
                "must then be local; use metastore: external with an object-store lakehouse"
            )
        return self

    @field_validator("lakehouse", "landing")
    @classmethod
    def _supported_location(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else None
        if scheme not in (None, "file", "s3a"):
            hint = " (use s3a:// for S3 and S3-compatible stores)" if scheme == "s3" else ""
            raise ValueError(
                f"unsupported location scheme {scheme}://{hint}; use a local path, "
                "file:// or s3a://"
            )
        return value

    def fingerprint(self) -> str:
        """SHA-256 of the canonical policy (keys, tables, gates, compliance; not paths or Spark
        settings, which vary by deployment), recorded in every commit."""
        payload = self.model_dump(
            mode="json", include={"version", "keys", "tables", "compliance", "gates"}
        )
        for gate in payload.get("gates", {}).values():
            gate.pop("source_file", None)
        if not payload["compliance"].get("strict"):
            # Added after lakehouses were written: its default must not change their hash.
            payload["compliance"].pop("strict", None)
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def table(self, name: str) -> TableConfig:
        """The config of table `name`, or `ConfigError` naming the known tables."""
        try:
            return self.tables[name]
        except KeyError:
            known = ", ".join(sorted(self.tables))
            raise ConfigError(
                f"{self.source_file}: unknown table {name!r} (known: {known})"
            ) from None


def _location(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) >= 2 and parts[0] == "tables":
        where = f"table {parts[1]!r}"
        if len(parts) >= 4 and parts[2] == "columns":
            where += f", column {parts[3]!r}"
            rest = parts[4:]
        else:
            rest = parts[2:]
        return where + (f", key {'.'.join(rest)!r}" if rest else "")
    return f"key {'.'.join(parts)!r}" if parts else "top level"


def format_validation_error(path: Path | str, exc: ValidationError, prefix: str = "") -> str:
    """One line naming the file, the table, column or key, and what is wrong (never a value)."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        problems.append(f"{prefix}{_location(tuple(err['loc']))}: {msg}")
    return f"{path}: " + "; ".join(problems)


def _check_structure(path: Path, cfg: PipelineConfig) -> None:
    """Checks that need the configuration alone (no operator registry, no Great Expectations)."""
    for key_name in (*cfg.keys, *cfg.tables):
        if not _NAME_RE.match(key_name):
            raise ConfigError(f"{path}: name {key_name!r} must match {_NAME_RE.pattern}")
    if cfg.erasure is not None:
        for role, name, kind in (
            ("kek", cfg.erasure.kek, "aead"),
            ("index_key", cfg.erasure.index_key, "hmac"),
        ):
            if name not in cfg.keys or cfg.keys[name].type != kind:
                raise ConfigError(
                    f"{path}: erasure.{role} {name!r} must name a declared key of type {kind}"
                )
    for table_name, table in cfg.tables.items():
        if table.erasure == "partial" and not (table.erasure_reason or "").strip():
            raise ConfigError(
                f"{path}: table {table_name!r}: erasure: partial needs an erasure_reason "
                "(why some personal data may outlive an erasure until VACUUM)"
            )
        if table.subject is not None and table.subject not in table.columns:
            raise ConfigError(
                f"{path}: table {table_name!r}: subject column {table.subject!r} is not declared"
            )
        qkey = cfg.keys.get(table.quarantine_key)
        if qkey is None or qkey.type != "aead":
            raise ConfigError(
                f"{path}: table {table_name!r}: quarantine_key {table.quarantine_key!r} "
                "must name a declared key of type aead"
            )
        for column_name in table.columns:
            if not _NAME_RE.match(column_name):
                raise ConfigError(
                    f"{path}: table {table_name!r}, column {column_name!r}: column names must "
                    f"match {_NAME_RE.pattern}"
                )


def read_yaml(path: Path, what: str = "file") -> Any:
    """The parsed YAML document at `path`.

    Raises:
        ConfigError: unreadable file or bad YAML; the message names the file and the line, never
            the text around it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None


def _load_gates(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """Read `<config dir>/gates/<name>.yaml` for every gate a table names."""
    names: set[str] = set()
    tables = raw.get("tables")
    if isinstance(tables, dict):
        for table in tables.values():
            if isinstance(table, dict) and isinstance(table.get("gates"), list):
                names.update(str(n) for n in table["gates"])
    gates: dict[str, Any] = {}
    for name in sorted(names):
        if not _NAME_RE.match(name):
            # A gate name is a file name under gates/: no separators, no `..`.
            raise ConfigError(f"{path}: gate name {name!r} must match {_NAME_RE.pattern}")
        gate_path = path.parent / "gates" / f"{name}.yaml"
        if not gate_path.is_file():
            raise ConfigError(f"{path}: gate {name!r}: cannot read {gate_path}")
        doc = read_yaml(gate_path, f"gate {name!r}")
        if not isinstance(doc, dict):
            raise ConfigError(f"{gate_path}: expected a mapping at the top level")
        doc.setdefault("name", name)
        doc["source_file"] = str(gate_path)
        try:
            gates[name] = GateConfig.model_validate(doc).model_dump()
        except ValidationError as exc:
            raise ConfigError(format_validation_error(gate_path, exc)) from None
    return gates


def load_config(path: str | Path, **overrides: Any) -> PipelineConfig:
    """Read a pipeline configuration file and check its types and structure.

    This is the ground floor: it needs neither Spark nor the operator registry. Entry points
    call `securepipe.pipeline.load.load_pipeline`, which adds the checks that need the operators,
    Great Expectations and the access policy.

    Args:
        path: the YAML file (usually `conf/pipeline.yaml`).
        **overrides: top-level values that replace the file's (e.g. `lakehouse="/tmp/lh"`);
            `None` values are ignored. `SECUREPIPE_PUSHGATEWAY` and `SECUREPIPE_LINEAGE_URL`
            replace `monitoring.pushgateway` and the lineage destination.

    Returns:
        The validated, frozen configuration.

    Raises:
        ConfigError: unreadable file, bad YAML, a wrong type, an unclassified column, a bad name
            or a key of the wrong type; the message names the file, table and column.
    """
    path = Path(path)
    raw = read_yaml(path, "configuration")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    raw["monitoring"] = _monitoring_from_environment(raw.get("monitoring") or {})
    raw["source_file"] = str(path)
    raw["gates"] = _load_gates(path, raw)
    try:
        cfg = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    _check_structure(path, cfg)
    return _anchored(cfg, path, {k for k, v in overrides.items() if v is not None})


def _monitoring_from_environment(section: dict[str, Any]) -> dict[str, Any]:
    """`SECUREPIPE_PUSHGATEWAY` and `SECUREPIPE_LINEAGE_URL` (HTTP lineage) over the file's."""
    out = dict(section)
    gateway = os.environ.get("SECUREPIPE_PUSHGATEWAY")
    if gateway:
        out["pushgateway"] = gateway
    lineage_url = os.environ.get("SECUREPIPE_LINEAGE_URL")
    if lineage_url:
        lineage = dict(out.get("lineage") or {})
        lineage.update(transport="http", url=lineage_url)
        lineage.pop("path", None)
        out["lineage"] = lineage
    return out


def _anchor(value: str, base: Path) -> str:
    """A local relative path joined to `base`; absolute paths and URIs as they are."""
    if "://" in value or Path(value).is_absolute():
        return value
    return os.path.normpath(base / value)


def _anchored(cfg: PipelineConfig, path: Path, overridden: set[str]) -> PipelineConfig:
    """The configuration with its relative local paths made absolute: those from the file (and
    the defaults) against the file's folder, so a job finds the same lakehouse and key store
    whatever directory a scheduler starts it in; those given as overrides (`--lakehouse`,
    `--landing` on the command line) against the working directory, as a shell user expects."""
    here, cwd = path.resolve().parent, Path.cwd()

    def base(field: str) -> Path:
        return cwd if field in overridden else here

    top = {f: _anchor(getattr(cfg, f), base(f)) for f in ("lakehouse", "landing")}
    if cfg.lock_dir is not None:
        top["lock_dir"] = _anchor(cfg.lock_dir, base("lock_dir"))
    elif "://" in top["lakehouse"] and not top["lakehouse"].startswith("file:"):
        # An object store has no file locks: they live on the scheduler host, in one folder
        # whatever directory a job starts in (the configuration's, like its other paths).
        top["lock_dir"] = os.path.normpath(here / ".cache" / "locks")
    keystore = cfg.keystore.model_copy(
        update={"path": _anchor(cfg.keystore.path, base("keystore"))}
    )
    spark = cfg.spark.model_copy(
        update={
            "jars_dir": _anchor(cfg.spark.jars_dir, base("spark")),
            "ivy_dir": _anchor(cfg.spark.ivy_dir, base("spark")),
        }
    )
    monitoring = cfg.monitoring
    if monitoring.metrics_file is not None:
        monitoring = monitoring.model_copy(
            update={"metrics_file": _anchor(monitoring.metrics_file, base("monitoring"))}
        )
    if monitoring.lineage is not None and monitoring.lineage.path is not None:
        lineage = monitoring.lineage.model_copy(
            update={"path": _anchor(monitoring.lineage.path, base("monitoring"))}
        )
        monitoring = monitoring.model_copy(update={"lineage": lineage})
    return cfg.model_copy(
        update={**top, "keystore": keystore, "spark": spark, "monitoring": monitoring}
    )
