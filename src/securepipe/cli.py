"""`securepipe` command line: run | demo | generate | keys | reencrypt | history.

Exit codes (what schedulers rely on): 0 ok, 2 a compliance gate refused the batch, 1 any other
error. Errors print one line on stderr that names the file, table, column or key at fault and
never a data value.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from securepipe.config import PipelineConfig, load_config
from securepipe.errors import SecurePipeError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from securepipe.access.policy import AccessPolicy
    from securepipe.pipeline import RunResult

__all__ = ["main"]

DEFAULT_CONFIG = os.environ.get("SECUREPIPE_CONFIG", "conf/pipeline.yaml")
_log = logging.getLogger("securepipe")


_EXTRA = (
    "event",
    "table",
    "stage",
    "seconds",
    "rows_read",
    "rows_rejected",
    "rows_published",
    "rows_quarantined",
    "version",
    "passed",
)


class JsonLines(logging.Formatter):
    """One JSON object per log record (for schedulers and log shippers)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line, with the stage fields when present."""
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: getattr(record, k) for k in _EXTRA if hasattr(record, k)})
        return json.dumps(doc, default=str)


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty() and os.environ.get("SECUREPIPE_LOG_FORMAT") != "json":
        # On a terminal: short progress lines.
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    else:
        handler.setFormatter(JsonLines())
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _session(cfg: PipelineConfig) -> SparkSession:
    from pyspark.sql import SparkSession

    from securepipe.spark import configure_builder

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = configure_builder(SparkSession.builder, cfg.spark, cfg.lakehouse).getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


@contextmanager
def _spark(cfg: PipelineConfig) -> Iterator[SparkSession]:
    """A session for one command, stopped however the command ends."""
    spark = _session(cfg)
    try:
        yield spark
    finally:
        spark.stop()


def _config_path(name: str) -> str:
    """`--config` as given, or the copy shipped with `spark-submit --files` of that name."""
    from pathlib import Path

    from securepipe.spark import submitted_file

    if Path(name).exists():
        return name
    shipped = submitted_file(name)
    return str(shipped) if shipped is not None else name


def _load(args: argparse.Namespace) -> PipelineConfig:
    return load_config(
        _config_path(args.config),
        lakehouse=getattr(args, "lakehouse", None),
        landing=getattr(args, "landing", None),
    )


def _policy(cfg: PipelineConfig) -> AccessPolicy | None:
    """The access policy next to the configuration (`<conf>/access/*.yaml`), if there is one."""
    from pathlib import Path

    from securepipe.access.policy import load_access_policy

    folder = Path(cfg.source_file).parent / "access"
    return load_access_policy(folder, cfg) if folder.is_dir() else None


def _print_summary(result: RunResult, cfg: PipelineConfig) -> None:
    print(f"\nsecurepipe run {result.run_id} (run date {result.run_date})")
    print(f"{'table':<14}{'read':>10}{'published':>11}{'quarantined':>13}{'version':>9}  status")
    for t in result.tables:
        print(
            f"{t.table:<14}{t.rows_read:>10}{t.rows_published:>11}{t.rows_quarantined:>13}"
            f"{t.table_version:>9}  {t.status}"
        )
    print("\noutputs:")
    for t in result.tables:
        print(f"  {t.table:<14} {t.table_path}   (quarantine: {t.quarantine_path})")
        for role, version in t.access.items():
            print(f"  {'':<14} role {role}: access/{role}/{t.table} version {version}")
    print(f"  report         {result.report_path}")
    print(
        f"  key store      {cfg.keystore.path} (master key: keep it safe, never in the lakehouse)"
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from securepipe.pipeline import parse_run_date, run_nightly

    cfg = _load(args)
    policy = _policy(cfg)
    if args.date:
        dates = [parse_run_date(args.date)]
        skip = False
    elif args.date_from and args.date_to:
        dates = _date_range(parse_run_date(args.date_from), parse_run_date(args.date_to))
        skip = not args.force
    else:
        raise SecurePipeError("give --date D, or --from D1 --to D2 for a backfill")
    tables = args.tables.split(",") if args.tables else None
    for name in tables or ():
        cfg.table(name)
    spark = _session(cfg)
    try:
        for day in dates:
            result = run_nightly(spark, cfg, day, tables=tables, policy=policy, skip_unchanged=skip)
            if args.json:
                print(json.dumps(result.as_dict(), indent=2, default=str))
            else:
                _print_summary(result, cfg)
    finally:
        spark.stop()
    return 0


def _date_range(start: str, end: str) -> list[str]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    if last < first:
        raise SecurePipeError(f"--from {start} is after --to {end}")
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _cmd_generate(args: argparse.Namespace) -> int:
    from securepipe.generate import generate_landing

    for batch in generate_landing(args.landing, args.date, args.rows, args.seed).values():
        print(f"{batch.table}: {batch.rows} rows ({batch.malformed} malformed) -> {batch.path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from securepipe.generate import generate_landing
    from securepipe.pipeline import parse_run_date, run_nightly

    cfg = _load(args)
    policy = _policy(cfg)
    day2 = date.fromisoformat(parse_run_date(args.date))
    day1 = day2 - timedelta(days=1)
    for i, day in enumerate((day1, day2)):
        _log.info("generating %d synthetic rows per table for %s", args.rows, day)
        generate_landing(cfg.landing, day, args.rows, seed=42 + i)
    spark = _session(cfg)
    try:
        # Two consecutive nights, then a re-run of the second: same rows, one more version.
        for label, day in (("night 1", day1), ("night 2", day2), ("re-run of night 2", day2)):
            print(f"\n=== {label}: {day} ===")
            result = run_nightly(spark, cfg, day.isoformat(), policy=policy)
            _print_summary(result, cfg)
    finally:
        spark.stop()
    print(
        "\nnext: securepipe audit | securepipe history customers | "
        "securepipe show customers --role support | securepipe access matrix"
    )
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from securepipe.crypto.keyring import Keyring
    from securepipe.ops import lakehouse_lock

    cfg = _load(args)
    if args.action == "list":
        _print_keys(Keyring(cfg.keystore))
        return 0
    # Key changes never interleave with a running night, an erasure or a re-encryption.
    with lakehouse_lock(cfg, exclusive=True, what=f"keys {args.action}"):
        return _keys_locked(args, cfg)


def _print_keys(keyring: object) -> None:
    for key in keyring.describe():  # type: ignore[attr-defined]
        versions = ", ".join(f"v{v} {created}" for v, created in key["versions"].items())
        destroyed = ", ".join(f"v{v}" for v in key["destroyed"])
        print(
            f"{key['name']:<16}{key['type']:<6} current v{key['current']}  ({versions})"
            + (f"  destroyed: {destroyed}" if destroyed else "")
        )


def _tables_using(cfg: PipelineConfig, key: str) -> list[str]:
    return sorted(
        t
        for t, tc in cfg.tables.items()
        if any(c.protect.params.get("key") == key for c in tc.columns.values())
    )


def _keys_locked(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    from securepipe.crypto.keyring import Keyring, rotate_local_master_key

    if args.action == "rewrap":
        if args.to:
            new_store = load_config(args.to).keystore
            kek = Keyring(cfg.keystore).rewrap(new_store)
            print(f"re-wrapped every data key under {kek}; point keystore: at it (see {args.to})")
        elif cfg.keystore.provider == "local":
            kek = rotate_local_master_key(cfg.keystore)
            print(
                f"new local master key {kek}; the old one is kept as *.retired-* in "
                f"{cfg.keystore.path}: destroy it once older backups expire"
            )
        else:
            raise SecurePipeError("keys rewrap needs --to CONFIG naming the new KEK")
    if args.action == "seal":
        keyring = Keyring(cfg.keystore, allow_unsealed=True)
        print(f"keyring sealed (generation {keyring.seal()})")
    keyring = Keyring(cfg.keystore, create=args.action == "init")
    subject_kek = cfg.erasure.kek if cfg.erasure is not None else None
    if args.action == "init":
        created = keyring.ensure(cfg.keys)
        print(f"created: {', '.join(created) or 'none (all keys exist)'}")
    elif args.action == "rotate":
        if not args.name:
            raise SecurePipeError("keys rotate needs a key NAME")
        print(f"{args.name}: now version {keyring.rotate(args.name)}")
        if args.name == subject_kek:
            from securepipe.erasure import rewrap_store

            with _spark(cfg) as spark:
                count = rewrap_store(spark, cfg, Keyring(cfg.keystore).handle(args.name))
            print(f"subject key store: {count} subject keys re-wrapped under the new version")
        else:
            tables = _tables_using(cfg, args.name)
            if tables:
                print(
                    "new writes use the new version, old data keeps decrypting; to move old "
                    f"data too: securepipe reencrypt TABLE for {', '.join(tables)}"
                )
    elif args.action == "destroy":
        if not args.name or args.version is None:
            raise SecurePipeError("keys destroy needs a key NAME and --version N")
        if args.name == subject_kek:
            from securepipe.erasure import subject_keys_wrapped_under

            with _spark(cfg) as spark:
                still = subject_keys_wrapped_under(spark, cfg, args.version)
            if still:
                raise SecurePipeError(
                    f"key {args.name!r} version {args.version} still wraps {still} subject keys: "
                    f"destroying it would erase those subjects; run `securepipe keys rotate "
                    f"{args.name}` first (it re-wraps the store)"
                )
        survivors = keyring.destroy(args.name, args.version)
        print(f"{args.name}: version {args.version} destroyed in {cfg.keystore.path}")
        for path in survivors:
            print(
                f"  still held (wrapped under a retired master key) by {path}: delete it with "
                "its master.key.retired-* once the backups that need it expire"
            )
    _print_keys(keyring)
    return 0


def _cmd_reencrypt(args: argparse.Namespace) -> int:
    from securepipe.ops import lakehouse_lock
    from securepipe.pipeline import new_run_id, resolve_keys, table_path
    from securepipe.rotation import reencrypt_table

    cfg = _load(args)
    cfg.table(args.table)
    with lakehouse_lock(cfg, exclusive=True, what=f"reencrypt {args.table}"):
        keys = resolve_keys(cfg, [args.table])
        with _spark(cfg) as spark:
            commit = reencrypt_table(
                spark, cfg, args.table, table_path(cfg, args.table), keys, new_run_id("reencrypt")
            )
    versions = ", ".join(f"{k} v{h.current}" for k, h in keys.items())
    print(
        f"{args.table}: re-encrypted {commit.rows_written} rows as version {commit.version} "
        f"({versions})"
    )
    return 0


def _cmd_access(args: argparse.Namespace) -> int:
    from pathlib import Path

    from securepipe.access.views import matrix
    from securepipe.pipeline import storage_root

    cfg = _load(args)
    policy = _policy(cfg)
    if policy is None:
        raise SecurePipeError(f"no access policy folder next to {cfg.source_file}")
    rows = matrix(cfg, policy)
    roles = list(policy.roles)
    width = max(len(f"{r['table']}.{r['column']}") for r in rows) + 2
    print(f"{'column':<{width}}{'class':<14}" + "".join(f"{r:<22}" for r in roles))
    for r in rows:
        cells = "".join(f"{(r[role] or '-'):<22}" for role in roles)
        print(f"{r['table'] + '.' + r['column']:<{width}}{r['classification']:<14}{cells}")
    out = args.html or f"{storage_root(cfg.lakehouse)}/reports/access-matrix.html"
    if "://" not in out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(_matrix_html(rows, roles, policy.version()), encoding="utf-8")
        print(f"\nwritten: {out} (policy version {policy.version()})")
    return 0


def _matrix_html(rows: list[dict[str, object]], roles: list[str], version: str) -> str:
    import html

    head = "".join(f"<th>{html.escape(r)}</th>" for r in roles)
    body = "".join(
        f"<tr><td>{html.escape(str(r['table']))}</td><td>{html.escape(str(r['column']))}</td>"
        f"<td>{html.escape(str(r['classification']))}</td>"
        f"<td>{html.escape(str(r['protection']))}</td>"
        + "".join(f"<td>{html.escape(str(r[role]) or '—')}</td>" for role in roles)
        + "</tr>"
        for r in rows
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>securepipe: who sees what</title>"
        "<style>body{font-family:sans-serif}td,th{padding:3px 8px;border-bottom:1px solid #ddd}"
        f"</style><h1>Who sees what</h1><p>policy version {html.escape(version)}; — = hidden</p>"
        f"<table><tr><th>table</th><th>column</th><th>class</th><th>protection</th>{head}</tr>"
        f"{body}</table>"
    )


def _cmd_show(args: argparse.Namespace) -> int:
    from securepipe.pipeline import table_path

    cfg = _load(args)
    cfg.table(args.table)
    spark = _session(cfg)
    try:
        if args.role:
            from securepipe.access.views import read_as

            policy = _policy(cfg)
            if policy is None:
                raise SecurePipeError("no access policy: --role needs conf/access/")
            df = read_as(
                spark,
                cfg,
                policy,
                args.table,
                args.role,
                version=args.version,
                timestamp=args.as_of,
            )
        else:
            reader = spark.read.format("delta")
            if args.version is not None:
                reader = reader.option("versionAsOf", args.version)
            elif args.as_of:
                reader = reader.option("timestampAsOf", args.as_of)
            df = reader.load(table_path(cfg, args.table))
        rows = df.limit(args.limit).collect()
        for row in rows:
            print(json.dumps({k: _display(v) for k, v in row.asDict().items()}, ensure_ascii=False))
    finally:
        spark.stop()
    return 0


def _display(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        data = bytes(value)
        if len(data) > 5 and data[0] == 1:
            return f"<envelope v{int.from_bytes(data[1:5], 'big')}, {len(data)} bytes>"
        return f"<binary, {len(data)} bytes>"
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _cmd_audit(args: argparse.Namespace) -> int:
    from securepipe.audit import read_audit
    from securepipe.pipeline import storage_root

    cfg = _load(args)
    spark = _session(cfg)
    try:
        rows = read_audit(spark, storage_root(cfg.lakehouse)).limit(args.limit).collect()
    finally:
        spark.stop()
    print(
        f"{'started (UTC)':<21}{'job':<11}{'run date':<12}{'status':<13}{'read':>9}"
        f"{'published':>11}{'quarant.':>10}  run id"
    )
    for r in rows:
        print(
            f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['job']:<11}{r['run_date'] or '':<12}"
            f"{r['status']:<13}{r['rows_read'] or 0:>9}{r['rows_published'] or 0:>11}"
            f"{r['rows_quarantined'] or 0:>10}  {r['run_id']}"
        )
        if r["message"]:
            print(f"{'':<21}{r['message'][:200]}")
    return 0


def _cmd_maintain(args: argparse.Namespace) -> int:
    from securepipe.maintenance import maintain

    cfg = _load(args)
    hours = args.retain_hours if args.retain_hours is not None else cfg.retention.vacuum_hours
    from securepipe.ops import check_retention, lakehouse_lock

    check_retention(hours, cfg.retention.allow_below_safety and args.allow_below_safety)
    with lakehouse_lock(cfg, exclusive=True, what="maintain"), _spark(cfg) as spark:
        for line in maintain(spark, cfg, hours):
            print(line)
    return 0


def _read_subjects(path: str) -> list[str]:
    from pathlib import Path

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SecurePipeError(f"cannot read subjects file {path} ({exc.strerror})") from None
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def _cmd_erase(args: argparse.Namespace) -> int:
    from datetime import UTC

    from securepipe.audit import AuditEntry, append_audit
    from securepipe.erasure import erase_subjects
    from securepipe.ops import lakehouse_lock
    from securepipe.pipeline import new_run_id, resolve_keys, storage_root

    cfg = _load(args)
    policy = _policy(cfg)
    ids = _read_subjects(args.subjects)
    run_id = new_run_id("erase")
    # Alone on the lakehouse: a running night could otherwise publish a subject between the
    # tombstone and the deletion, or lose a new key to the store's VACUUM.
    with lakehouse_lock(cfg, exclusive=True, what="erase"):
        keys = resolve_keys(cfg, list(cfg.tables))
        started = datetime.now(UTC)
        with _spark(cfg) as spark:
            result = erase_subjects(spark, cfg, ids, keys, run_id, policy)
            append_audit(
                spark,
                storage_root(cfg.lakehouse),
                [
                    AuditEntry(
                        run_id=run_id,
                        job="erase",
                        started_at=started,
                        ended_at=datetime.now(UTC),
                        status="ok",
                        config_hash=cfg.fingerprint(),
                        message=(
                            f"{args.reason or 'erasure request'}: {result.requested} subjects, "
                            f"{result.keys_destroyed} keys destroyed, {result.unknown} unknown, "
                            f"{result.tombstones_added} tombstones added"
                        ),
                        tables={
                            "rows_deleted": result.rows_deleted,
                            "subject_hashes": result.subject_hashes,
                        },
                    )
                ],
            )
    print(
        f"erased {result.keys_destroyed} of {result.requested} subjects "
        f"({result.unknown} unknown: nothing to erase, tombstoned all the same); "
        f"rows deleted: {result.rows_deleted}"
    )
    print(
        f"audit run id {run_id}; prove it with: securepipe verify-erasure --subjects "
        f"{args.subjects}"
    )
    return 0


def _cmd_verify_erasure(args: argparse.Namespace) -> int:
    from securepipe.erasure import verify_erasure
    from securepipe.pipeline import resolve_keys

    cfg = _load(args)
    policy = _policy(cfg)
    ids = _read_subjects(args.subjects)
    keys = resolve_keys(cfg, list(cfg.tables))
    with _spark(cfg) as spark:
        report = verify_erasure(spark, cfg, ids, keys, policy)
    print(json.dumps(report, indent=2, default=str))
    for name, entry in sorted(report["tables"].items()):
        for column, col in sorted(entry["columns"].items()):
            until = col.get("removable_after")
            until = f" (removable after {until})" if until else ""
            versions = col.get("versions") or []
            where = f" in versions {min(versions)}-{max(versions)}" if versions else ""
            print(
                f"  {name}.{column}: {col['values']} values{where}: {col['status']}{until}",
                file=sys.stderr,
            )
    if not report["erased"]:
        reasons = []
        if report["values_readable"]:
            reasons.append(
                f"{report['values_readable']} values of these subjects can still be read"
            )
        if report.get("subject_keys_live"):
            reasons.append(f"{report['subject_keys_live']} subjects still have a key")
        if report.get("tombstoned", 0) < report["subjects"]:
            reasons.append(
                f"{report['subjects'] - report.get('tombstoned', 0)} subjects have no tombstone "
                "(not erased: they would be published again)"
            )
        if report["errors"]:
            reasons.append(f"{len(report['errors'])} tables could not be read")
        print(f"securepipe: error: not erased: {'; '.join(reasons)}", file=sys.stderr)
        return 2
    print(
        f"verified: every file of {report['tables_checked']} tables read, "
        f"{report['values_found']} stored values of these subjects, none readable"
    )
    return 0


def _cmd_history(args: argparse.Namespace) -> int:
    from securepipe.delta_io import history
    from securepipe.pipeline import quarantine_path, table_path

    cfg = _load(args)
    cfg.table(args.table)
    path = quarantine_path(cfg, args.table) if args.quarantine else table_path(cfg, args.table)
    spark = _session(cfg)
    try:
        for entry in history(spark, path, args.limit):
            print(json.dumps(entry, sort_keys=True))
    finally:
        spark.stop()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="securepipe", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=DEFAULT_CONFIG, help="pipeline YAML (%(default)s)")
    common.add_argument("--lakehouse", help="override the lakehouse root")
    common.add_argument("--landing", help="override the landing root")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", parents=[common], help="run the nightly job for one date")
    run.add_argument("--date", help="run date YYYY-MM-DD")
    run.add_argument("--from", dest="date_from", help="backfill: first date")
    run.add_argument("--to", dest="date_to", help="backfill: last date (inclusive)")
    run.add_argument(
        "--force",
        action="store_true",
        help="backfill: re-run dates already published from the same inputs",
    )
    run.add_argument("--tables", help="comma-separated subset of tables")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=_cmd_run)

    yesterday = (date.today() - timedelta(days=1)).isoformat()
    demo = sub.add_parser("demo", parents=[common], help="generate a synthetic batch and run it")
    demo.add_argument("--date", default=yesterday)
    demo.add_argument("--rows", type=int, default=10_000)
    demo.set_defaults(func=_cmd_demo)

    gen = sub.add_parser("generate", help="write a synthetic landing batch")
    gen.add_argument("--landing", default="./landing")
    gen.add_argument("--date", default=yesterday)
    gen.add_argument("--rows", type=int, default=10_000)
    gen.add_argument("--seed", type=int, default=42)
    gen.set_defaults(func=_cmd_generate)

    keys = sub.add_parser("keys", parents=[common], help="manage data keys")
    keys.add_argument("action", choices=["init", "list", "rotate", "rewrap", "destroy", "seal"])
    keys.add_argument("name", nargs="?", help="key to rotate or destroy")
    keys.add_argument("--to", help="rewrap: a config whose keystore: names the new KEK")
    keys.add_argument("--version", type=int, help="destroy: the version to destroy")
    keys.set_defaults(func=_cmd_keys)

    reenc = sub.add_parser(
        "reencrypt", parents=[common], help="rewrite a table under the newest key versions"
    )
    reenc.add_argument("table")
    reenc.set_defaults(func=_cmd_reencrypt)

    show = sub.add_parser("show", parents=[common], help="rows of a table, now or in the past")
    show.add_argument("table")
    show.add_argument("--version", type=int, help="Delta version (time travel)")
    show.add_argument("--as-of", help="timestamp (time travel), e.g. '2026-11-28 23:00:00'")
    show.add_argument("--role", help="read the role's table, decrypting what it is granted")
    show.add_argument("--limit", type=int, default=20)
    show.set_defaults(func=_cmd_show)

    aud = sub.add_parser("audit", parents=[common], help="the run log, newest first")
    aud.add_argument("--limit", type=int, default=30)
    aud.set_defaults(func=_cmd_audit)

    maint = sub.add_parser("maintain", parents=[common], help="VACUUM and log retention")
    maint.add_argument("--retain-hours", type=int, help="override retention.vacuum_hours")
    maint.add_argument(
        "--allow-below-safety",
        action="store_true",
        help="with retention.allow_below_safety: permit < 168 h",
    )
    maint.set_defaults(func=_cmd_maintain)

    erase = sub.add_parser("erase", parents=[common], help="erase data subjects (crypto-shred)")
    erase.add_argument("--subjects", required=True, help="file with one subject id per line")
    erase.add_argument("--reason", help="recorded in the audit log (no personal data)")
    erase.set_defaults(func=_cmd_erase)

    verify = sub.add_parser(
        "verify-erasure",
        parents=[common],
        help="prove no past version holds readable values of subjects",
    )
    verify.add_argument("--subjects", required=True)
    verify.set_defaults(func=_cmd_verify_erasure)

    access = sub.add_parser("access", parents=[common], help="access policies")
    access.add_argument("action", choices=["matrix"])
    access.add_argument("--html", help="where to write the HTML matrix")
    access.set_defaults(func=_cmd_access)

    hist = sub.add_parser("history", parents=[common], help="commits and compliance records")
    hist.add_argument("table")
    hist.add_argument("--quarantine", action="store_true", help="the table's quarantine instead")
    hist.add_argument("--limit", type=int)
    hist.set_defaults(func=_cmd_history)
    return parser


def _unexpected(exc: BaseException) -> str:
    # Spark and Py4J messages can quote data values: report only the class and the error
    # condition, never the message text.
    condition = getattr(exc, "getCondition", lambda: None)()
    if isinstance(exc, ImportError) and exc.name:
        # A missing module is a deployment mistake (--py-files, the executors' Python).
        return f"unexpected {type(exc).__name__}: no module {exc.name!r} on this Python"
    return f"unexpected {type(exc).__name__}" + (f" [{condition}]" if condition else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `securepipe` and of `jobs/*.py`; returns the process exit code."""
    args = _parser().parse_args(argv)
    _setup_logging()
    try:
        code: int = args.func(args)
        return code
    except SecurePipeError as exc:
        print(f"securepipe: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        print(f"securepipe: error: {_unexpected(exc)}", file=sys.stderr)
        if os.environ.get("SECUREPIPE_DEBUG") == "1":  # developers only: may show values
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
