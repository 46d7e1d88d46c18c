"""Registry of protection operators; refuses duplicate names."""

from __future__ import annotations

from collections.abc import Mapping

from securepipe.config import ColumnConfig, KeyConfig
from securepipe.errors import ConfigError
from securepipe.protect.base import Operator

__all__ = ["get_operator", "operator_names", "register_operator", "validate_protection"]

_REGISTRY: dict[str, Operator] = {}


def register_operator(cls: type[Operator]) -> type[Operator]:
    """Class decorator adding an operator; a second operator with the same name is refused."""
    if cls.name in _REGISTRY:
        raise ValueError(f"operator {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls()
    return cls


def _ensure_loaded() -> None:
    # The built-in operators register themselves on import.
    import securepipe.protect.operators  # noqa: F401


def operator_names() -> list[str]:
    """Names of all registered operators."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_operator(name: str) -> Operator:
    """The operator called `name`; `KeyError` if there is none."""
    _ensure_loaded()
    return _REGISTRY[name]


def validate_protection(column: ColumnConfig, keys: Mapping[str, KeyConfig], where: str) -> None:
    """Validate one column's protection against its operator and the declared keys.

    Raises:
        ConfigError: unknown operator, bad parameters, unknown or mistyped key, or personal data
            published in clear; the message starts with `where` (file, table, column).
    """
    _ensure_loaded()
    spec = column.protect
    operator = _REGISTRY.get(spec.op)
    if operator is None:
        raise ConfigError(
            f"{where}: unknown protection op {spec.op!r} (known: {', '.join(sorted(_REGISTRY))})"
        )
    if spec.op == "keep" and column.classification.personal:
        raise ConfigError(
            f"{where}: classification {column.classification.value!r} cannot be published in "
            "clear with op 'keep'; encrypt, tokenize, mask or drop it"
        )
    try:
        operator.validate(spec.params, column, keys)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
