"""Spark session configuration. The library configures builders; only jobs and tests build.

`configure_builder(builder, settings)` adds Delta Lake (extension, catalog, jars) and secure
defaults. It never creates a session and never puts a secret into the configuration.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark import SparkContext
from pyspark.sql import SparkSession

from securepipe.config import CatalogConfig, SparkSettings
from securepipe.errors import ConfigError
from securepipe.jars import MAVEN_COORDINATES, S3_PACKAGES, local_jars
from securepipe.layout import storage_root

__all__ = [
    "AUTH_SECRET_ENV",
    "AUTH_SECRET_FILE_ENV",
    "HARDENED",
    "REDACTION_REGEX",
    "S3A_DEFAULTS",
    "SECURE_DEFAULTS",
    "catalog_settings",
    "configure_builder",
    "is_object_store",
    "submitted_conf",
    "submitted_file",
    "under_spark_submit",
]

# Spark hides the values of configuration keys matching this in the UI, event logs and
# `spark.conf` dumps; ours adds the names our secrets and KMS settings use.
REDACTION_REGEX = (
    r"(?i)secret|password|passphrase|token|credential|private|access[.]?key|master[.]?key"
    r"|securepipe[.]kms|pkcs11"
)

SECURE_DEFAULTS: dict[str, str] = {
    # Plaintext passes through shuffle and spill files between read and protect.
    "spark.io.encryption.enabled": "true",
    "spark.io.encryption.keySizeBits": "256",
    "spark.redaction.regex": REDACTION_REGEX,
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    "spark.sql.session.timeZone": "UTC",
    # Vectorised UDFs are how protection runs; keep Arrow on.
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # Event logs would keep query plans and metrics of every run; opt in explicitly.
    "spark.eventLog.enabled": "false",
    "spark.databricks.delta.retentionDurationCheck.enabled": "true",
    # Stage progress bars interleave with our logs; progress is reported by securepipe itself.
    "spark.ui.showConsoleProgress": "false",
    # Whoever reaches the UI could kill stages of a night half-way through its commits.
    "spark.ui.killEnabled": "false",
}


# Settings that keep plaintext and keys off the wire and off local disks. A submission may set
# them (`--conf`), but turning one off is refused unless `spark.allow_insecure` names it.
HARDENED = ("spark.authenticate", "spark.network.crypto.enabled", "spark.io.encryption.enabled")


# An `s3a://` lakehouse: credentials come from the environment of each JVM (or, on EC2/EKS, the
# instance role), never from the configuration; connections are bounded so a dead endpoint fails
# the run instead of hanging it.
S3A_DEFAULTS: dict[str, str] = {
    "spark.hadoop.fs.s3a.aws.credentials.provider": (
        "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider,"
        "org.apache.hadoop.fs.s3a.auth.IAMInstanceCredentialsProvider"
    ),
    "spark.hadoop.fs.s3a.attempts.maximum": "3",
    "spark.hadoop.fs.s3a.retry.limit": "3",
    "spark.hadoop.fs.s3a.connection.timeout": "60000",
}

# Configuration keys that would put storage credentials into a file; refused.
_CREDENTIAL_KEY = re.compile(r"(?i)fs\.s3a\.(.*\.)?(access\.key|secret\.key|session\.token)$")

# The cluster's shared secret (`spark.authenticate` on a standalone cluster) is read from one of
# these at session start, never from a configuration file: the value itself, or a file holding it.
AUTH_SECRET_ENV = "SECUREPIPE_SPARK_AUTH_SECRET"  # noqa: S105 - a variable name
AUTH_SECRET_FILE_ENV = "SECUREPIPE_SPARK_AUTH_SECRET_FILE"  # noqa: S105 - a variable name


def under_spark_submit() -> bool:
    """True when this Python driver was started by `spark-submit` (its JVM is already running and
    its `--master`, `--jars`, `--files` are in force)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def submitted_file(name: str) -> Path | None:
    """The driver's copy of a file shipped with `spark-submit --files`, looked up by file name.

    In client mode `--files` leaves the file where it was submitted from and lists it in
    `spark.files` (a system property of the submitting JVM); in cluster modes the file is in the
    driver's working directory and is found before this is asked. `None` when not submitted.
    """
    if not under_spark_submit():
        return None
    SparkContext._ensure_initialized()  # attaches to spark-submit's JVM; starts nothing
    jvm: Any = SparkContext._jvm
    wanted = Path(name).name
    for uri in (jvm.java.lang.System.getProperty("spark.files") or "").split(","):
        parsed = urlparse(uri.strip())
        if parsed.scheme in ("", "file") and Path(parsed.path).name == wanted:
            return Path(parsed.path)
    return None


def submitted_conf() -> dict[str, str]:
    """The Spark settings the submitter gave (`spark-submit --conf`, `--name`, `--jars`, a
    properties file or the cluster's spark-defaults.conf), read from the running JVM; empty when
    not under `spark-submit`. An application name that is only spark-submit's default (the
    script's file name) does not count as given."""
    if not under_spark_submit():
        return {}
    SparkContext._ensure_initialized()  # attaches to spark-submit's JVM; starts nothing
    jvm: Any = SparkContext._jvm
    props = jvm.java.lang.System.getProperties()
    given = {
        str(name): str(props.getProperty(name))
        for name in props.stringPropertyNames()
        if str(name).startswith("spark.")
    }
    if given.get("spark.app.name") == Path(sys.argv[0]).name:
        del given["spark.app.name"]
    return given


_DELTA_CLASS = "io.delta.sql.DeltaSparkSessionExtension"


def _refuse_a_driver_without_delta(jars: str) -> None:
    """Under spark-submit the driver JVM runs already: `spark.jars` set now reaches neither its
    class path nor Delta's session extension. A submission without Delta on it is refused with
    the `--jars` value that fixes it (instead of a failure deep inside the first Delta call)."""
    if not under_spark_submit():
        return
    SparkContext._ensure_initialized()  # attaches to spark-submit's JVM; starts nothing
    jvm: Any = SparkContext._jvm
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()  # has --jars
    try:
        jvm.java.lang.Class.forName(_DELTA_CLASS, False, loader)
    except Exception:
        raise ConfigError(
            "spark-submit started the driver without the Delta jars, and spark.jars: local "
            f"cannot add them to a running JVM: submit with --jars {jars} (or --packages "
            "io.delta:delta-spark_2.13:<version>, and spark.jars: provided)"
        ) from None


def is_object_store(location: str) -> bool:
    """True for an `s3a://` location (the object store securepipe supports)."""
    return location.startswith("s3a://")


def _auth_secret() -> str | None:
    value = os.environ.get(AUTH_SECRET_ENV)
    path = os.environ.get(AUTH_SECRET_FILE_ENV)
    if value:
        return value
    if path:
        try:
            secret = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{AUTH_SECRET_FILE_ENV}={path}: cannot read the Spark secret ({exc.strerror})"
            ) from None
        if not secret:
            raise ConfigError(f"{AUTH_SECRET_FILE_ENV}={path}: the file is empty")
        return secret
    return None


_DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"


def catalog_settings(lakehouse: str | None, catalog: CatalogConfig | None) -> dict[str, str]:
    """The session's warehouse folder and, with `catalog:`, the Hive catalog.

    A local lakehouse keeps Spark's warehouse folder in `<lakehouse>/_catalog/warehouse`, never
    in the working directory. With `catalog:` the session uses the Hive catalog; an embedded
    metastore is a Derby database in `<lakehouse>/_catalog/metastore_db` (an external one is
    named by `spark.hadoop.hive.metastore.uris` in `spark.conf` or `--conf`).
    """
    if lakehouse is None:
        return {}
    root = storage_root(lakehouse)
    out: dict[str, str] = {}
    local = "://" not in root or root.startswith("file:")
    if local or catalog is not None:
        out["spark.sql.warehouse.dir"] = f"{root}/_catalog/warehouse"
    if catalog is not None:
        out["spark.sql.catalogImplementation"] = "hive"
        if catalog.metastore == "embedded":
            folder = root.removeprefix("file://").removeprefix("file:")
            out["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
                f"jdbc:derby:;databaseName={folder}/_catalog/metastore_db;create=true"
            )
            # Derby's own log, which it would otherwise write to the working directory.
            out[_DRIVER_JAVA_OPTIONS] = f"-Dderby.stream.error.file={folder}/_catalog/derby.log"
            # Derby admits one process, which holds the database until it ends: Hive's default
            # of 10 attempts 2 s apart only delays a night that finds it locked (its names wait
            # for the next night either way).
            out["spark.hadoop.hive.hmshandler.retry.attempts"] = "1"
    return out


def configure_builder(
    builder: SparkSession.Builder,
    settings: SparkSettings,
    lakehouse: str | None = None,
    catalog: CatalogConfig | None = None,
    driver_java_options: Sequence[str] = (),
) -> SparkSession.Builder:
    """Add Delta Lake, the jars and securepipe's secure defaults to a session builder.

    Under `spark-submit`, a setting the submitter gave (`--conf`, `--name`, a properties file)
    wins over securepipe's default and over the configuration file's `spark:` section; only the
    hardened settings (`HARDENED`) cannot be turned off that way, unless the configuration's
    `spark.allow_insecure` names them. The submitter's `spark.redaction.regex` is extended with
    securepipe's, not replaced.

    Args:
        builder: a `SparkSession.builder` (possibly already configured by the caller).
        settings: the typed `spark:` section of the pipeline configuration.
        lakehouse: the lakehouse root; an `s3a://` root adds hadoop-aws and the S3A defaults.
        catalog: the configuration's `catalog:` section (`catalog_settings`).
        driver_java_options: more options for the driver JVM (when this process starts it),
            added to the configuration's `spark.driver.extraJavaOptions`.

    Returns:
        The same builder, for chaining; call `.getOrCreate()` in a job or a test fixture.

    Raises:
        ConfigError: `jars: local` and the jars folder lacks a jar; storage credentials in the
            `spark.conf` section; an unreadable Spark secret file; a submission that turns off a
            hardened setting.
    """
    for key in settings.conf:
        if _CREDENTIAL_KEY.search(key):
            raise ConfigError(
                f"spark.conf {key!r}: storage credentials never go in the configuration; "
                "set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment or use an "
                "instance role"
            )
    given = submitted_conf()
    # One rule for both places a hardened setting can be turned off: the submission and the
    # configuration's own `spark.conf`.
    for origin, values in (
        ("the submission", given),
        ("spark.conf in the configuration", settings.conf),
    ):
        for key in HARDENED:
            off = values.get(key, "").strip().lower() == "false"
            if off and key not in settings.allow_insecure:
                raise ConfigError(
                    f"{origin} sets {key}=false, which securepipe keeps on (plaintext and keys "
                    "would cross the network or reach local disks unprotected); remove it, or "
                    f"list {key!r} under spark.allow_insecure in the configuration to accept it"
                )
    options: dict[str, str] = {}
    s3 = lakehouse is not None and is_object_store(lakehouse)
    if settings.master and not under_spark_submit():
        # Under spark-submit its --master governs; the file's master is for `securepipe run`.
        builder = builder.master(settings.master)
        if settings.master.startswith("local"):
            # A local run serves nothing to the network: bind the driver to loopback.
            options["spark.driver.bindAddress"] = "127.0.0.1"
            options["spark.driver.host"] = "127.0.0.1"
            # Even on loopback, other local users could reach the driver's RPC and block ports:
            # authenticate (Spark generates a per-application secret in local mode) and encrypt,
            # which also keeps I/O encryption keys off the (loopback) wire.
            options["spark.authenticate"] = "true"
            options["spark.network.crypto.enabled"] = "true"
            if settings.ui_enabled:
                # The UI binds to SPARK_LOCAL_IP, else every interface: keep it on loopback.
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    options["spark.app.name"] = settings.app_name
    options.update(SECURE_DEFAULTS)
    if "spark.redaction.regex" in given:
        options["spark.redaction.regex"] = f"{given['spark.redaction.regex']}|{REDACTION_REGEX}"
        del given["spark.redaction.regex"]
    options["spark.sql.shuffle.partitions"] = str(settings.shuffle_partitions)
    options["spark.ui.enabled"] = str(settings.ui_enabled).lower()
    # Python workers must use this interpreter (the venv's): the system python3 lacks pandas,
    # pyarrow and cryptography.
    options["spark.pyspark.python"] = os.environ.get("PYSPARK_PYTHON", sys.executable)
    if settings.jars == "local":
        try:
            jars = local_jars(settings.jars_dir, s3=s3)
        except FileNotFoundError as exc:
            raise ConfigError(str(exc)) from None
        options["spark.jars"] = ",".join(str(p.resolve()) for p in jars)
        _refuse_a_driver_without_delta(options["spark.jars"])
    elif settings.jars == "packages":
        packages = MAVEN_COORDINATES + (S3_PACKAGES if s3 else ())
        options["spark.jars.packages"] = ",".join(packages)
        options["spark.jars.ivy"] = str(Path(settings.ivy_dir).resolve())
    if s3:
        options.update(S3A_DEFAULTS)
    placed = catalog_settings(lakehouse, catalog)
    java = [settings.conf.get(_DRIVER_JAVA_OPTIONS, ""), placed.pop(_DRIVER_JAVA_OPTIONS, "")]
    options.update(placed)
    secret = _auth_secret()
    if secret is not None:
        # Redacted by spark.redaction.regex ("secret") in the UI, logs and event logs.
        options["spark.authenticate"] = "true"
        options["spark.authenticate.secret"] = secret
    options.update(settings.conf)
    java_options = " ".join(o for o in [*java, *driver_java_options] if o)
    if java_options:
        options[_DRIVER_JAVA_OPTIONS] = java_options
    for key, value in options.items():
        if key not in given:  # the submitter's setting stands
            builder = builder.config(key, value)
    return builder
