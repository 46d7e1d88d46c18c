"""Registry of protection operators; refuses duplicate names.

The built-in operators register themselves when `securepipe.protect.operators` is imported,
which `securepipe.protect` does: import the package (or anything in it) and they are there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from securepipe.config import ColumnConfig, KeyConfig
from securepipe.errors import ConfigError
from securepipe.protect.base import Operator

__all__ = [
    "get_operator",
    "mask_names",
    "operator_for",
    "operator_names",
    "parse_mask",
    "register_operator",
    "validate_protection",
]

_REGISTRY: dict[str, Operator] = {}


def register_operator(cls: type[Operator]) -> type[Operator]:
    """Class decorator adding an operator; a second operator with the same name is refused."""
    if cls.name in _REGISTRY:
        raise ValueError(f"operator {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls()
    return cls


def operator_names() -> list[str]:
    """Names of all registered operators."""
    return sorted(_REGISTRY)


def get_operator(name: str) -> Operator:
    """The operator called `name`; `KeyError` if there is none."""
    return _REGISTRY[name]


def operator_for(column: ColumnConfig) -> Operator:
    """The operator that protects `column` (validated configurations only)."""
    return _REGISTRY[column.protect.op]


def mask_names() -> list[str]:
    """The masks a role policy can name after `mask:`."""
    names = [s for op in _REGISTRY.values() for s in op.mask_shorthands]
    names += [f"{op.name}:N" for op in _REGISTRY.values() if op.mask_argument]
    return names


def parse_mask(spec: str) -> tuple[str, dict[str, Any]]:
    """`last4`, `year`, `partial:3`, `bucket:1000`, ... → (operator name, parameters).

    Raises:
        ValueError: no operator offers that mask.
    """
    name, _, arg = spec.partition(":")
    for op in _REGISTRY.values():
        if not arg and name in op.mask_shorthands:
            return op.name, dict(op.mask_shorthands[name])
        if arg.isdigit() and name == op.name and op.mask_argument:
            return op.name, {op.mask_argument: int(arg)}
    raise ValueError(f"unknown mask {spec!r} (known: {', '.join(mask_names())})")


def validate_protection(column: ColumnConfig, keys: Mapping[str, KeyConfig], where: str) -> None:
    """Validate one column's protection against its operator and the declared keys.

    Raises:
        ConfigError: unknown operator, bad parameters, unknown or mistyped key, or personal data
            published in clear; the message starts with `where` (file, table, column).
    """
    spec = column.protect
    operator = _REGISTRY.get(spec.op)
    if operator is None:
        raise ConfigError(
            f"{where}: unknown protection op {spec.op!r} (known: {', '.join(sorted(_REGISTRY))})"
        )
    if operator.passes_value and column.classification.personal:
        raise ConfigError(
            f"{where}: classification {column.classification.value!r} cannot be published in "
            f"clear with op {spec.op!r}; encrypt, tokenize, mask or drop it"
        )
    try:
        operator.validate(spec.params, column, keys)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
