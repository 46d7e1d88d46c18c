"""The keys a run needs: resolve them, refuse a rolled-back keyring, count what they sealed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from pyspark.sql import SparkSession

from securepipe.config import KeyStoreConfig, PipelineConfig, TableConfig
from securepipe.crypto.keyring import KeyHandle, Keyring, rotate_local_master_key
from securepipe.errors import KeyAccessError, SecurePipeError
from securepipe.io.delta import commit_records
from securepipe.io.subject_store import (
    check_index_key,
    rewrap_store,
    subject_keys_wrapped_under,
)
from securepipe.layout import Layout
from securepipe.locks import lakehouse_lock
from securepipe.protect.registry import operator_for
from securepipe.protect.subject_udfs import KEK_SENTINEL

__all__ = [
    "ENCRYPTION_BUDGET",
    "KeyChange",
    "change_keys",
    "check_key_store",
    "check_keyring_not_rolled_back",
    "count_encryptions",
    "keys_of",
    "resolve_keys",
    "table_keys",
]

# AES-GCM with random 96-bit nonces: NIST SP 800-38D keeps the chance of a repeated nonce below
# 2^-32 up to 2^32 encryptions per key; we ask for a rotation well before, at 2^30.
ENCRYPTION_BUDGET = 2**30
_log = logging.getLogger(__name__)


def keys_of(table_cfg: TableConfig) -> set[str]:
    """The column keys a table's operators use, with its quarantine key."""
    names = {table_cfg.quarantine_key}
    for col in table_cfg.columns.values():
        name = operator_for(col).key_name(col.protect.params)
        if name and name != KEK_SENTINEL:
            names.add(name)
    return names


def resolve_keys(cfg: PipelineConfig, tables: Iterable[str]) -> dict[str, KeyHandle]:
    """Create missing declared data keys and return the handles the tables need (driver side).

    The master key (KEK) must exist: it is created by `securepipe keys init` (or `demo`), never
    here — a key store path that resolves somewhere new must stop the job, not start a second
    key hierarchy nobody backs up. Per-subject operators ask for `KEK_SENTINEL`: it maps to the
    configured subject KEK.

    Raises:
        KeyAccessError: no master key at the configured place (the message names it).
    """
    keyring = Keyring(cfg.keystore)
    keyring.ensure(cfg.keys)
    needed: set[str] = set()
    for table in tables:
        needed |= keys_of(cfg.table(table))
    if cfg.erasure is not None:
        needed |= {cfg.erasure.kek, cfg.erasure.index_key}
    handles = {name: keyring.handle(name) for name in sorted(needed)}
    if cfg.erasure is not None:
        handles[KEK_SENTINEL] = handles[cfg.erasure.kek]
    return handles


def key_versions(
    cfg: PipelineConfig, table_cfg: TableConfig, keys: Mapping[str, KeyHandle]
) -> dict[str, int]:
    """The current version of every key a table's commit depends on (recorded in the commit)."""
    return {name: keys[name].current for name in table_keys(cfg, table_cfg)}


def table_keys(cfg: PipelineConfig, table_cfg: TableConfig) -> list[str]:
    """Every key a table depends on: its column and quarantine keys, and the subject key store's
    keys when it has a data subject."""
    names = keys_of(table_cfg)
    if table_cfg.subject is not None and cfg.erasure is not None:
        names |= {cfg.erasure.kek, cfg.erasure.index_key}
    return sorted(names)


def generation(keys: Mapping[str, KeyHandle]) -> int:
    """The keyring generation the handles were read from."""
    return max((h.generation for h in keys.values()), default=0)


def check_keyring_not_rolled_back(
    spark: SparkSession, path: str, table: str, keys: Mapping[str, KeyHandle]
) -> None:
    """Refuse a keyring older than the one the table was last written with.

    The last publish commit records each key's version and the keyring's generation; a keyring
    whose generation or current versions are lower was restored from an older copy (a destroyed
    version put back, `current` rolled back).

    Raises:
        KeyAccessError: naming the key (or the generation) and the table.
    """
    for record in commit_records(spark, path, limit=20):
        if record.get("kind") != "publish":
            continue
        held = generation(keys)
        if int(record.get("keyring_generation", 0)) > held:
            raise KeyAccessError(
                f"table {table!r} was last written with keyring generation "
                f"{record['keyring_generation']}, the key store holds generation {held}: "
                "the keyring was rolled back; restore the current one"
            )
        for name, version in (record.get("key_versions") or {}).items():
            handle = keys.get(name)
            if handle is not None and int(version) > handle.current:
                raise KeyAccessError(
                    f"key {name!r}: table {table!r} was last written with version {version}, "
                    f"the keyring's current version is {handle.current}: the keyring was rolled "
                    "back; restore the current one"
                )
        return


def check_key_store(
    spark: SparkSession, cfg: PipelineConfig, keys: Mapping[str, KeyHandle], tables: Iterable[str]
) -> None:
    """Before a job reads or changes the lakehouse with these keys: the keyring is not older
    than the one each table was last written with, and the subject index key is the one the
    subject key store and the tombstones were written with.

    Raises:
        KeyAccessError: naming the table or the key store.
    """
    layout = Layout.of(cfg)
    for table in tables:
        check_keyring_not_rolled_back(spark, layout.table(table), table, keys)
    if cfg.erasure is not None and any(cfg.table(t).subject for t in cfg.tables):
        check_index_key(spark, layout, keys[cfg.erasure.index_key])


def count_encryptions(cfg: PipelineConfig, counts: Mapping[str, int]) -> None:
    """Add a run's random-nonce encryptions (`{"<key>:v<version>": n}`) to each key version's
    total in the keyring; warn past the budget."""
    if not any(counts.values()):
        return
    totals = Keyring(cfg.keystore).record_encryptions(dict(counts))
    for label, total in sorted(totals.items()):
        if total >= ENCRYPTION_BUDGET:
            name = label.split(":v")[0]
            _log.warning(
                "key %s has sealed %d values with random nonces (budget %d): rotate it now "
                "(securepipe keys rotate %s), then securepipe reencrypt",
                label,
                total,
                ENCRYPTION_BUDGET,
                name,
                extra={"event": "encryption_budget", "key": label, "total": total},
            )


# --- the `keys` job: every change alone on the lakehouse -------------------------------------


@dataclass
class KeyChange:
    """What a `keys` action did, for the console."""

    keyring: Keyring
    lines: list[str] = field(default_factory=list)


SessionFactory = Callable[[], AbstractContextManager[SparkSession]]


def _tables_using(cfg: PipelineConfig, key: str) -> list[str]:
    return sorted(
        t
        for t, tc in cfg.tables.items()
        if any(operator_for(c).key_name(c.protect.params) == key for c in tc.columns.values())
    )


def change_keys(
    cfg: PipelineConfig,
    action: str,
    session: SessionFactory,
    name: str | None = None,
    version: int | None = None,
    new_store: KeyStoreConfig | None = None,
) -> KeyChange:
    """`init`, `rotate NAME`, `destroy NAME --version N`, `rewrap [--to]`, `seal`, holding the
    exclusive lakehouse lock (no night, erasure or re-encryption interleaves). `session` opens a
    SparkSession, for the subject key store only (rotating or destroying the subject KEK).

    Raises:
        SecurePipeError: a missing NAME or version; destroying a subject-KEK version that still
            wraps subject keys (that would erase those subjects).
    """
    with lakehouse_lock(Layout.of(cfg), exclusive=True, what=f"keys {action}"):
        lines: list[str] = []
        if action == "rewrap":
            lines.append(_rewrap(cfg, new_store))
        if action == "seal":
            generation_ = Keyring(cfg.keystore, allow_unsealed=True).seal()
            lines.append(f"keyring sealed (generation {generation_})")
        keyring = Keyring(cfg.keystore, create=action == "init")
        if action == "init":
            created = keyring.ensure(cfg.keys)
            lines.append(f"created: {', '.join(created) or 'none (all keys exist)'}")
        elif action == "rotate":
            lines += _rotate(cfg, keyring, _named(name, action), session)
        elif action == "destroy":
            if version is None:
                raise SecurePipeError("keys destroy needs a key NAME and --version N")
            lines += _destroy(cfg, keyring, _named(name, action), version, session)
        return KeyChange(keyring, lines)


def _named(name: str | None, action: str) -> str:
    if not name:
        raise SecurePipeError(f"keys {action} needs a key NAME")
    return name


def _subject_kek(cfg: PipelineConfig) -> str | None:
    return cfg.erasure.kek if cfg.erasure is not None else None


def _rewrap(cfg: PipelineConfig, new_store: KeyStoreConfig | None) -> str:
    if new_store is not None:
        kek = Keyring(cfg.keystore).rewrap(new_store)
        return f"re-wrapped every data key under {kek}; point keystore: at the new store"
    if cfg.keystore.provider == "local":
        kek = rotate_local_master_key(cfg.keystore)
        return (
            f"new local master key {kek}; the old one is kept as *.retired-* in "
            f"{cfg.keystore.path}: destroy it once older backups expire"
        )
    raise SecurePipeError("keys rewrap needs --to CONFIG naming the new KEK")


def _rotate(cfg: PipelineConfig, keyring: Keyring, name: str, session: SessionFactory) -> list[str]:
    lines = [f"{name}: now version {keyring.rotate(name)}"]
    if name == _subject_kek(cfg):
        with session() as spark:
            count = rewrap_store(spark, Layout.of(cfg), Keyring(cfg.keystore).handle(name))
        lines.append(f"subject key store: {count} subject keys re-wrapped under the new version")
    elif tables := _tables_using(cfg, name):
        lines.append(
            "new writes use the new version, old data keeps decrypting; to move old data too: "
            f"securepipe reencrypt TABLE for {', '.join(tables)}"
        )
    return lines


def _destroy(
    cfg: PipelineConfig, keyring: Keyring, name: str, version: int, session: SessionFactory
) -> list[str]:
    if name == _subject_kek(cfg):
        with session() as spark:
            still = subject_keys_wrapped_under(spark, Layout.of(cfg), version)
        if still:
            raise SecurePipeError(
                f"key {name!r} version {version} still wraps {still} subject keys: destroying "
                f"it would erase those subjects; run `securepipe keys rotate {name}` first (it "
                "re-wraps the store)"
            )
    survivors = keyring.destroy(name, version)
    lines = [f"{name}: version {version} destroyed in {cfg.keystore.path}"]
    lines += [
        f"  still held (wrapped under a retired master key) by {path}: delete it with its "
        "master.key.retired-* once the backups that need it expire"
        for path in survivors
    ]
    return lines
