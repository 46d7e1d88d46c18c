"""Access policies (`conf/access/*.yaml`): roles, row filters, column treatments, key grants.

Fail closed: a column a role's policy does not name is hidden, a table it does not name is
invisible. Everything is validated before Spark starts: unknown role, table or column, a row
filter that does not parse (or reads anything but the table's own clear columns), `clear` on a
sensitive column, `decrypt` without a key grant, a mask on an irreversible token.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import sqlglot
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlglot import exp

from securepipe.config import (
    NAME_PATTERN,
    PipelineConfig,
    TableConfig,
    format_validation_error,
    read_yaml,
)
from securepipe.errors import ConfigError, PolicyError
from securepipe.protect.registry import get_operator, mask_names, operator_for, parse_mask

__all__ = [
    "AccessPolicy",
    "ColumnTreatment",
    "RiskPolicy",
    "RolePolicy",
    "TablePolicy",
    "load_access_policy",
    "parse_treatment",
]

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RiskPolicy(_Model):
    """Re-identification risk of a role table (`securepipe.access.risk`): the columns an
    attacker could link to other data (quasi-identifiers), the attributes that must not be
    learnt by singling someone out (sensitive), the targets and what to do when they are missed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    quasi_identifiers: list[str] = Field(min_length=1)
    sensitive: list[str] = Field(default_factory=list)
    k: int = Field(ge=2, description="smallest equivalence class allowed (k-anonymity)")
    l_diversity: int | None = Field(
        default=None, ge=2, alias="l", description="distinct sensitive values per class"
    )
    action: Literal["fail", "suppress", "warn"] = "fail"


class TablePolicy(_Model):
    """What a role sees of one table."""

    rows: str = Field(default="false", description="Spark SQL predicate; :name = role attribute")
    columns: dict[str, str] = Field(default_factory=dict)
    risk: RiskPolicy | None = None


class RolePolicy(_Model):
    """One audience: attributes for its row filters, key grants, tables."""

    description: str = ""
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)
    keys: list[str] = Field(default_factory=list, description="keys the role may decrypt with")
    tables: dict[str, TablePolicy] = Field(default_factory=dict)


class AccessPolicy(_Model):
    """All roles, with the files they came from and a version hash."""

    roles: dict[str, RolePolicy] = Field(default_factory=dict)
    sources: list[str] = Field(default_factory=list)

    def version(self) -> str:
        """SHA-256 (16 hex digits) of the canonical policy, recorded in role-table commits."""
        payload = json.dumps(self.model_dump(mode="json", exclude={"sources"}), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def role(self, name: str) -> RolePolicy:
        """The policy of role `name`; `PolicyError` for an unknown role."""
        try:
            return self.roles[name]
        except KeyError:
            raise PolicyError(
                f"unknown role {name!r} (known: {', '.join(sorted(self.roles))})"
            ) from None


class ColumnTreatment(_Model):
    """A parsed column treatment: clear | decrypt | token | mask (operator + params)."""

    kind: str
    mask_op: str | None = None
    mask_params: dict[str, Any] = Field(default_factory=dict)

    def label(self) -> str:
        """Short text for the access matrix."""
        if self.kind != "mask":
            return self.kind
        params = ",".join(f"{k}={v}" for k, v in sorted(self.mask_params.items()))
        return f"mask:{self.mask_op}" + (f"({params})" if params else "")


def parse_treatment(text: str) -> ColumnTreatment:
    """`clear`, `decrypt`, `token`, `hidden`, or `mask:<mask>` (the masks the operators offer:
    `securepipe.protect.registry.mask_names`, e.g. `mask:last4`, `mask:partial:N`)."""
    if text in ("clear", "decrypt", "token", "hidden"):
        return ColumnTreatment(kind=text)
    if text.startswith("mask:"):
        try:
            op, params = parse_mask(text.removeprefix("mask:"))
        except ValueError:
            pass
        else:
            return ColumnTreatment(kind="mask", mask_op=op, mask_params=params)
    raise ValueError(
        f"unknown treatment {text!r} (clear, decrypt, token, hidden, mask:{'|'.join(mask_names())})"
    )


def _literal(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def bind_predicate(predicate: str, attributes: dict[str, Any], where: str) -> str:
    """Replace `:name` by the role attribute as a SQL literal."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in attributes:
            raise PolicyError(f"{where}: row filter uses :{name}, which the role does not define")
        return _literal(attributes[name])

    return _PARAM.sub(sub, predicate)


def _check_predicate(predicate: str, table_cfg: TableConfig, where: str) -> None:
    try:
        tree = sqlglot.parse_one(predicate, read="spark")
    except Exception:
        raise PolicyError(f"{where}: row filter does not parse as Spark SQL") from None
    if not isinstance(tree, exp.Condition) or any(
        isinstance(node, exp.Query | exp.Subquery) for node in tree.walk()
    ):
        raise PolicyError(f"{where}: row filter must be a boolean expression without subqueries")
    for column in tree.find_all(exp.Column):
        cfg = table_cfg.columns.get(column.name)
        if cfg is None:
            raise PolicyError(f"{where}: row filter uses unknown column {column.name!r}")
        if not operator_for(cfg).joinable:
            raise PolicyError(
                f"{where}: row filter uses column {column.name!r}, which is not comparable "
                f"after protection (op {cfg.protect.op!r})"
            )


def _check_role(name: str, role: RolePolicy, cfg: PipelineConfig, where: str) -> None:
    for key in role.keys:
        if key not in cfg.keys:
            raise PolicyError(f"{where}: role {name!r} is granted unknown key {key!r}")
    for table_name, tpol in role.tables.items():
        at = f"{where}: role {name!r}, table {table_name!r}"
        table_cfg = cfg.tables.get(table_name)
        if table_cfg is None:
            raise PolicyError(f"{at}: unknown table")
        _check_predicate(bind_predicate(tpol.rows, role.attributes, at), table_cfg, at)
        for column, text in tpol.columns.items():
            cat = f"{at}, column {column!r}"
            col_cfg = table_cfg.columns.get(column)
            if col_cfg is None:
                raise PolicyError(f"{cat}: unknown column")
            operator = operator_for(col_cfg)
            if operator.removes_column:
                raise PolicyError(f"{cat}: the column is dropped at protection")
            try:
                treatment = parse_treatment(text)
            except ValueError as exc:
                raise PolicyError(f"{cat}: {exc}") from None
            op = col_cfg.protect.op
            reversible = operator.is_reversible(col_cfg.protect.params)
            if treatment.kind == "clear" and (
                not operator.passes_value or col_cfg.classification.personal
            ):
                raise PolicyError(
                    f"{cat}: 'clear' is only for non-sensitive columns published as is "
                    f"(this one is {col_cfg.classification.value}, op {op!r}); use decrypt, "
                    "token or a mask"
                )
            if operator.per_subject:
                if treatment.kind not in ("decrypt", "token", "hidden"):
                    raise PolicyError(f"{cat}: per-subject columns allow decrypt, token or hidden")
                if treatment.kind == "decrypt":
                    kek = cfg.erasure.kek if cfg.erasure else ""
                    if kek not in role.keys:
                        raise PolicyError(f"{cat}: 'decrypt' needs a grant of key {kek!r} (keys:)")
                    subject = str(table_cfg.subject)
                    if parse_treatment(tpol.columns.get(subject, "hidden")).kind != "clear":
                        raise PolicyError(
                            f"{cat}: decrypting per-subject values needs the subject column "
                            f"{subject!r} visible in clear"
                        )
                continue
            if treatment.kind == "decrypt":
                if not reversible:
                    raise PolicyError(f"{cat}: op {op!r} cannot be decrypted")
                key = str(col_cfg.protect.params["key"])
                if key not in role.keys:
                    raise PolicyError(f"{cat}: 'decrypt' needs a grant of key {key!r} (keys:)")
            if treatment.kind == "token" and operator.passes_value:
                raise PolicyError(f"{cat}: the column is not tokenized; use clear or a mask")
            if treatment.kind == "mask":
                if not operator.passes_value and not reversible:
                    raise PolicyError(
                        f"{cat}: a mask needs the value, and op {op!r} is irreversible"
                    )
                mask = get_operator(str(treatment.mask_op))
                try:
                    mask.validate(treatment.mask_params, col_cfg, cfg.keys)
                except ValueError as exc:
                    raise PolicyError(f"{cat}: {exc}") from None
        if tpol.risk is not None:
            _check_risk(tpol, table_cfg, f"{at}, risk")


def _check_risk(tpol: TablePolicy, table_cfg: TableConfig, where: str) -> None:
    """Quasi-identifiers and sensitive attributes must be columns the role sees, stored in a
    form where equal values compare equal (clear, a mask, a deterministic token): a decrypted
    column is a direct identifier, and random ciphertexts would make every class look unique
    and every value look diverse."""
    risk = tpol.risk
    assert risk is not None
    seen: set[str] = set()
    for group, names in (
        ("quasi-identifier", risk.quasi_identifiers),
        ("sensitive", risk.sensitive),
    ):
        for column in names:
            cat = f"{where}: {group} column {column!r}"
            if column in seen:
                raise PolicyError(f"{cat} is listed twice")
            seen.add(column)
            col_cfg = table_cfg.columns.get(column)
            if col_cfg is None:
                raise PolicyError(f"{cat}: unknown column")
            kind = parse_treatment(tpol.columns.get(column, "hidden")).kind
            if kind == "hidden":
                raise PolicyError(f"{cat}: the role does not see it")
            if kind == "decrypt":
                raise PolicyError(
                    f"{cat}: the role decrypts it (a direct identifier, stored as random "
                    "ciphertext); declare masked, tokenized or clear columns"
                )
            if kind == "token" and not operator_for(col_cfg).joinable:
                raise PolicyError(
                    f"{cat}: its tokens differ per subject (op {col_cfg.protect.op!r}), so equal "
                    "values cannot be grouped"
                )
    if risk.l_diversity is not None and not risk.sensitive:
        raise PolicyError(f"{where}: l needs at least one sensitive column")


def load_access_policy(folder: str | Path, cfg: PipelineConfig) -> AccessPolicy:
    """Load and validate every `*.yaml` of an access folder against the pipeline configuration.

    Raises:
        ConfigError: bad YAML, wrong types, duplicate roles; PolicyError: see the module doc.
    """
    folder = Path(folder)
    roles: dict[str, Any] = {}
    sources = []
    for path in sorted(folder.glob("*.yaml")):
        doc = read_yaml(path, "access policy") or {}
        if not isinstance(doc, dict) or not isinstance(doc.get("roles", {}), dict):
            raise ConfigError(f"{path}: expected a mapping with a 'roles:' mapping")
        for name, role in (doc.get("roles") or {}).items():
            # A role name becomes a folder (access/<role>/) and a catalog database: the same
            # rule as table and column names, so `../tables` cannot land on a published table.
            if not isinstance(name, str) or not NAME_PATTERN.match(name):
                raise ConfigError(
                    f"{path}: role name {str(name)!r} must match {NAME_PATTERN.pattern}"
                )
            if name in roles:
                raise ConfigError(f"{path}: role {name!r} is defined twice")
            try:
                roles[name] = RolePolicy.model_validate(role)
            except ValidationError as exc:
                raise ConfigError(
                    format_validation_error(path, exc, prefix=f"role {name!r}, ")
                ) from None
            _check_role(name, roles[name], cfg, str(path))
        sources.append(str(path))
    return AccessPolicy(roles=roles, sources=sources)
