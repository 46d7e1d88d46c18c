"""Built-in protection operators (one class each)."""

from __future__ import annotations

from pyspark.sql import Column

from securepipe.protect.base import ColumnContext, Operator
from securepipe.protect.registry import register_operator
from securepipe.protect.udfs import apply_udf, build_encrypt_udf, build_hmac_udf

__all__ = ["Drop", "Encrypt", "Keep", "Tokenize"]


def _require_key(ctx: ColumnContext) -> None:
    if ctx.key is None:  # validated earlier; a programming error if reached
        raise RuntimeError(f"no key resolved for {ctx.table}.{ctx.column}")


@register_operator
class Keep(Operator):
    """Publish the value as is (refused for pii and sensitive columns)."""

    name = "keep"

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """The column unchanged."""
        return col


@register_operator
class Drop(Operator):
    """Do not publish the column at all."""

    name = "drop"

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """`None`: the column is removed."""
        return None


@register_operator
class Encrypt(Operator):
    """Randomised AES-256-GCM envelope encryption bound to table, column and key version."""

    name = "encrypt"
    key_type = "aead"
    reversible = True

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """Binary envelope of the value (null stays null)."""
        _require_key(ctx)
        assert ctx.key is not None
        return apply_udf(build_encrypt_udf(ctx.table, ctx.column, ctx.key), col)


@register_operator
class Tokenize(Operator):
    """Deterministic, joinable token. `kind: hmac` is HMAC-SHA256 (irreversible)."""

    name = "tokenize"
    key_type = "hmac"
    required = frozenset({"kind"})

    def validate(self, params, column, keys) -> None:  # type: ignore[no-untyped-def]
        """Also checks `kind`."""
        super().validate(params, column, keys)
        if params["kind"] != "hmac":
            raise ValueError(f"tokenize kind {params['kind']!r} is not supported (use 'hmac')")

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """Base64url HMAC-SHA256 token of the value."""
        _require_key(ctx)
        assert ctx.key is not None
        return apply_udf(build_hmac_udf(ctx.key), col)

    def describe(self, params) -> dict[str, str]:  # type: ignore[no-untyped-def]
        """Adds the token kind."""
        return {**super().describe(params), "securepipe.kind": str(params["kind"])}
