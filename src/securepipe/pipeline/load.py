"""The one load step of every entry point: configuration, operators, gates, access policy.

`securepipe.config.load_config` reads the YAML and checks types and structure. Here the checks
that need the operator registry (each column's protection against its operator and keys), Great
Expectations (each gate's expectations) and the access policy (`<conf>/access/*.yaml`) run, all
before Spark starts. The CLI, the jobs and the tests call `load_pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securepipe.access.policy import AccessPolicy, load_access_policy
from securepipe.config import PipelineConfig, load_config
from securepipe.errors import ConfigError
from securepipe.protect.registry import (
    get_operator,
    operator_for,
    operator_names,
    validate_protection,
)
from securepipe.quality.rules import validate_gate

__all__ = ["Loaded", "check_pipeline", "load_pipeline", "policy_folder"]


@dataclass(frozen=True)
class Loaded:
    """A validated configuration and the access policy beside it (if there is one)."""

    cfg: PipelineConfig
    policy: AccessPolicy | None


def policy_folder(cfg: PipelineConfig) -> Path:
    """`<config folder>/access`: where the access policy lives."""
    return Path(cfg.source_file).parent / "access"


def check_pipeline(cfg: PipelineConfig) -> None:
    """Operator and gate checks of a configuration read by `load_config`.

    Raises:
        ConfigError: an unknown operator or parameter, a key of the wrong type, personal data in
            clear, per-subject protection without a subject, personal data of a subject table
            that outlives an erasure (unless `erasure: partial`), a key column that is not
            joinable, or a gate Great Expectations refuses; the message names the file, table
            and column.
    """
    path = cfg.source_file
    for table_name, table in cfg.tables.items():
        for column_name, column in table.columns.items():
            where = f"{path}: table {table_name!r}, column {column_name!r}"
            validate_protection(column, cfg.keys, where)
            operator = operator_for(column)
            if operator.per_subject and (table.subject is None or cfg.erasure is None):
                raise ConfigError(
                    f"{where}: per-subject protection needs the table's subject: column and a "
                    "top-level erasure: section"
                )
            if table.subject is not None and column.classification.personal:
                left = operator.erasure_class(column.protect.params)
                if left not in ("subject_key", "nothing") and table.erasure != "partial":
                    raise ConfigError(
                        f"{where}: {column.classification.value} data of a subject table under "
                        f"op {column.protect.op!r} outlives an erasure (old versions keep it "
                        f"until VACUUM); protect it per subject ({', '.join(_per_subject())}) or "
                        "declare the table's erasure: partial with an erasure_reason"
                    )
            if column_name == table.key and not operator.joinable:
                raise ConfigError(
                    f"{where}: the key column must stay joinable and checkable for uniqueness "
                    f"(an operator that is deterministic: {', '.join(_joinable())})"
                )
        for gate_name in table.gates:
            validate_gate(cfg.gates[gate_name], table_name, table)


def _per_subject() -> list[str]:
    return [n for n in operator_names() if get_operator(n).per_subject]


def _joinable() -> list[str]:
    return [n for n in operator_names() if get_operator(n).joinable]


def load_pipeline(path: str | Path, **overrides: Any) -> Loaded:
    """Read, type-check and validate the configuration, then its access policy.

    Args:
        path: the pipeline YAML (`conf/pipeline.yaml`).
        **overrides: top-level values replacing the file's (`lakehouse=`, `landing=`); `None`
            values are ignored.

    Raises:
        ConfigError, PolicyError: see `load_config`, `check_pipeline`, `load_access_policy`.
    """
    cfg = load_config(path, **overrides)
    check_pipeline(cfg)
    folder = policy_folder(cfg)
    policy = load_access_policy(folder, cfg) if folder.is_dir() else None
    return Loaded(cfg, policy)
