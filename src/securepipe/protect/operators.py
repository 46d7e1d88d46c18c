"""Built-in protection operators (one class each), registered by name.

Cryptographic operators run as vectorised UDFs (`securepipe.protect.udfs`); masks are plain Spark
expressions. Null stays null everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from securepipe.config import ColumnConfig, KeyConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.crypto.tokens import ALPHABETS, fpe_min_length
from securepipe.protect.base import ColumnContext, Operator
from securepipe.protect.registry import register_operator
from securepipe.protect.subject_udfs import KEK_SENTINEL, subject_expr
from securepipe.protect.udfs import (
    apply_udf,
    build_daead_udf,
    build_decrypt_udf,
    build_detokenize_udf,
    build_encrypt_udf,
    build_fpe_udf,
    build_hmac_udf,
    build_reencrypt_udf,
)

__all__ = [
    "Bucket",
    "Drop",
    "Encrypt",
    "EncryptSubject",
    "Fpe",
    "FpeSubject",
    "Generalize",
    "Initials",
    "Keep",
    "Nullify",
    "Partial",
    "Redact",
    "Tokenize",
    "TokenizeSubject",
    "fpe_alphabet",
    "fpe_tweak",
]

_NUMERIC = ("int", "integer", "long", "bigint", "double", "float")


def _key(ctx: ColumnContext):  # type: ignore[no-untyped-def]
    if ctx.key is None:  # validated earlier; a programming error if reached
        raise RuntimeError(f"no key resolved for {ctx.table}.{ctx.column}")
    return ctx.key


def _null_safe(col: Column, expr: Column) -> Column:
    return F.when(col.isNull(), F.lit(None).cast("string")).otherwise(expr)


@register_operator
class Keep(Operator):
    """Publish the value as is (refused for pii and sensitive columns)."""

    name = "keep"
    erasure = "clear"
    joinable = True
    passes_value = True
    reversible = True

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """The column unchanged."""
        return col

    def reveal(self, col: Column, ctx: ColumnContext) -> Column:
        """The value is stored as is."""
        return col


@register_operator
class Drop(Operator):
    """Do not publish the column at all."""

    name = "drop"
    erasure = "nothing"
    removes_column = True

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """`None`: the column is removed."""
        return None


@register_operator
class Encrypt(Operator):
    """Randomised AES-256-GCM envelope encryption bound to table, column and key version."""

    name = "encrypt"
    key_type = "aead"
    reversible = True
    erasure = "column_key"
    cryptographic = True
    random_nonce = True

    def well_formed(
        self, col: Column, params: Mapping[str, Any], key: KeyHandle | None
    ) -> Column | None:
        """Format byte 0x01, a known key version, room for nonce and tag."""
        version = F.conv(F.hex(F.substring(col, 2, 4)), 16, 10).cast("long")
        ok = (F.substring(col, 1, 1) == F.unhex(F.lit("01"))) & (F.length(col) >= 33)
        return ok & version.isin(key.versions) if key is not None else ok

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """Binary envelope of the value (null stays null)."""
        return apply_udf(build_encrypt_udf(ctx.table, ctx.column, _key(ctx)), col)

    def reveal(self, col: Column, ctx: ColumnContext) -> Column:
        """AES-GCM decryption with the envelope's key version."""
        return build_decrypt_udf(ctx.table, ctx.column, _key(ctx))(col)

    def reencrypt(self, col: Column, ctx: ColumnContext) -> Column | None:
        """Decrypt and seal again under the key's current version, value by value."""
        return build_reencrypt_udf(ctx.table, ctx.column, _key(ctx))(col)


@register_operator
class Tokenize(Operator):
    """Deterministic, joinable token: `kind: hmac` (irreversible) or `kind: daead` (AES-SIV)."""

    name = "tokenize"
    key_type = "hmac"
    cryptographic = True
    joinable = True
    required = frozenset({"kind"})
    _kinds = {"hmac": "hmac", "daead": "daead"}

    def validate(
        self, params: Mapping[str, Any], column: ColumnConfig, keys: Mapping[str, KeyConfig]
    ) -> None:
        """Checks `kind`, then the key against the kind's key type."""
        kind = params.get("kind")
        if kind not in self._kinds:
            raise ValueError(f"tokenize kind {kind!r} is not one of {sorted(self._kinds)}")
        super().validate(params, column, keys)

    def _check_key_type(self, params: Mapping[str, Any], key: KeyConfig, key_name: str) -> None:
        expected = self._kinds[params["kind"]]
        if key.type != expected:
            raise ValueError(
                f"key {key_name!r} has type {key.type!r}; tokenize kind {params['kind']!r} "
                f"needs a {expected!r} key"
            )

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """Base64url token of the value."""
        kind = ctx.config.protect.params["kind"]
        udf = build_hmac_udf(_key(ctx)) if kind == "hmac" else build_daead_udf(_key(ctx))
        return apply_udf(udf, col)

    def describe(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Adds the token kind."""
        return {**super().describe(params), "securepipe.kind": str(params["kind"])}

    def is_reversible(self, params: Mapping[str, Any]) -> bool:
        """daead tokens are reversible, hmac tokens are not."""
        return params.get("kind") == "daead"

    def reveal(self, col: Column, ctx: ColumnContext) -> Column:
        """AES-SIV detokenization (daead); hmac tokens are refused."""
        if not self.is_reversible(ctx.config.protect.params):
            return super().reveal(col, ctx)
        return build_detokenize_udf(ctx.table, ctx.column, _key(ctx), "daead")(col)

    def reencrypt(self, col: Column, ctx: ColumnContext) -> Column | None:
        """daead: detokenize, then tokenize under the current version (hmac keys do not
        rotate: their tokens must stay joinable)."""
        if not self.is_reversible(ctx.config.protect.params):
            return None
        return build_daead_udf(_key(ctx))(self.reveal(col, ctx))

    def erasure_class(self, params: Mapping[str, Any]) -> str:
        """daead tokens open with the column key; hmac tokens stay linkable."""
        return "column_key" if params.get("kind") == "daead" else "token"

    def well_formed(
        self, col: Column, params: Mapping[str, Any], key: KeyHandle | None
    ) -> Column | None:
        """hmac: 43 base64url characters; daead: version + SIV tag + value, base64url."""
        if params.get("kind") == "hmac":
            return col.rlike(r"^[A-Za-z0-9_-]{43}$")
        return col.rlike(r"^[A-Za-z0-9_-]{27,}$")


def fpe_shape(col: Column, params: Mapping[str, Any]) -> Column:
    """True where a value has enough characters of the fpe alphabet for FF1's domain."""
    alphabet = fpe_alphabet(params)
    klass = "".join("\\" + ch if ch in "\\]^-[&" else ch for ch in alphabet)
    kept = F.regexp_replace(col, f"[^{klass}]", "")
    return F.length(kept) >= fpe_min_length(alphabet)


def fpe_tweak(table: str, column: str, params: Mapping[str, Any]) -> bytes:
    """The FF1 tweak of a column: `<table>.<column>` unless the config sets `tweak:` (an empty
    tweak, kept for tokens written before tweaks were bound to the column, must be explicit)."""
    tweak = params.get("tweak")
    return f"{table}.{column}".encode() if tweak is None else str(tweak).encode()


def fpe_alphabet(params: Mapping[str, Any]) -> str:
    """The alphabet an fpe column uses: a named one, or `chars`."""
    if "chars" in params:
        return str(params["chars"])
    return ALPHABETS[str(params.get("alphabet", "digits"))]


class _FpeShape:
    """FF1's input domain and output shape, shared by `fpe` and `fpe_subject`."""

    def well_formed(
        self, col: Column, params: Mapping[str, Any], key: KeyHandle | None
    ) -> Column | None:
        """Enough characters of the alphabet for FF1's domain."""
        return fpe_shape(col, params)

    def accepts(self, col: Column, params: Mapping[str, Any]) -> Column | None:
        """FF1 cannot encrypt fewer than ~6 digits: such a value is not of the declared format."""
        return fpe_shape(col, params)


@register_operator
class Fpe(_FpeShape, Operator):
    """FF1 format-preserving token over an alphabet; other characters stay in place."""

    name = "fpe"
    key_type = "fpe"
    optional = frozenset({"alphabet", "chars", "tweak"})
    reversible = True
    erasure = "column_key"
    cryptographic = True
    joinable = True

    def validate(
        self, params: Mapping[str, Any], column: ColumnConfig, keys: Mapping[str, KeyConfig]
    ) -> None:
        """Checks the alphabet (named, or `chars` of at least 2 distinct characters)."""
        super().validate(params, column, keys)
        if "chars" in params and "alphabet" in params:
            raise ValueError("give either 'alphabet' or 'chars', not both")
        if "alphabet" in params and params["alphabet"] not in ALPHABETS:
            raise ValueError(
                f"unknown fpe alphabet {params['alphabet']!r} (known: {', '.join(ALPHABETS)})"
            )
        if "chars" in params:
            chars = str(params["chars"])
            if len(chars) < 2 or len(set(chars)) != len(chars):
                raise ValueError("fpe 'chars' needs at least 2 distinct characters")

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """The FF1 token, same length and format."""
        params = ctx.config.protect.params
        tweak = fpe_tweak(ctx.table, ctx.column, params)
        udf = build_fpe_udf(ctx.table, ctx.column, _key(ctx), fpe_alphabet(params), tweak)
        return apply_udf(udf, col)

    def reveal(self, col: Column, ctx: ColumnContext) -> Column:
        """FF1 decryption with the same alphabet and tweak."""
        params = ctx.config.protect.params
        tweak = fpe_tweak(ctx.table, ctx.column, params)
        return build_detokenize_udf(
            ctx.table, ctx.column, _key(ctx), "fpe", fpe_alphabet(params), tweak
        )(col)


@register_operator
class Redact(Operator):
    """Replace every non-null value by a fixed text (default `[REDACTED]`)."""

    name = "redact"
    erasure = "nothing"
    mask_shorthands = {"redact": {}}
    optional = frozenset({"with"})

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """The replacement text, null for null."""
        text = str(ctx.config.protect.params.get("with", "[REDACTED]"))
        return _null_safe(col, F.lit(text))


@register_operator
class Partial(Operator):
    """Show the last N characters, mask the others (separators kept by default)."""

    name = "partial"
    mask_shorthands = {"last4": {"show_last": 4}, "last2": {"show_last": 2}}
    mask_argument = "show_last"
    optional = frozenset({"show_last", "mask_char", "keep_separators"})

    def validate(
        self, params: Mapping[str, Any], column: ColumnConfig, keys: Mapping[str, KeyConfig]
    ) -> None:
        """`show_last` is a small non-negative integer; `mask_char` one character."""
        super().validate(params, column, keys)
        show = params.get("show_last", 4)
        if not isinstance(show, int) or not 0 <= show <= 8:
            raise ValueError("partial 'show_last' must be an integer between 0 and 8")
        if len(str(params.get("mask_char", "*"))) != 1:
            raise ValueError("partial 'mask_char' must be one character")

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """E.g. `123-45-6789` → `***-**-6789`; values not longer than N are fully masked."""
        params = ctx.config.protect.params
        n = int(params.get("show_last", 4))
        mask = str(params.get("mask_char", "*"))
        text = col.cast("string")
        length = F.length(text)
        head = F.substring(text, 1, F.greatest(length - n, F.lit(0)))
        tail = F.substring(text, -n, n) if n else F.lit("")
        pattern = "[^-\\s/.()+]" if params.get("keep_separators", True) else "."
        masked_head = F.regexp_replace(head, pattern, mask)
        all_masked = F.regexp_replace(text, pattern, mask)
        return _null_safe(
            col, F.when(length > n, F.concat(masked_head, tail)).otherwise(all_masked)
        )


@register_operator
class Initials(Operator):
    """The first letter of each word, upper-cased: `ada lovelace` → `A. L.` (a mask)."""

    name = "initials"
    mask_shorthands = {"initials": {}}

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """`X. Y.` from the words of the value; null stays null, blank gives blank."""
        words = F.filter(F.split(F.trim(col.cast("string")), r"\s+"), lambda w: F.length(w) > 0)
        letters = F.transform(words, lambda w: F.concat(F.upper(F.substring(w, 1, 1)), F.lit(".")))
        return _null_safe(col, F.array_join(letters, " "))


@register_operator
class Nullify(Operator):
    """Publish the column with every value null (keeps the schema, drops the content)."""

    name = "nullify"
    erasure = "nothing"
    mask_shorthands = {"nullify": {}}

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """A typed null."""
        return F.lit(None).cast("string")


@register_operator
class Generalize(Operator):
    """A date or timestamp reduced to its year (`1985`) or month (`1985-03`)."""

    name = "generalize"
    mask_shorthands = {"year": {"to": "year"}, "month": {"to": "month"}}
    required = frozenset({"to"})

    def validate(
        self, params: Mapping[str, Any], column: ColumnConfig, keys: Mapping[str, KeyConfig]
    ) -> None:
        """Needs `to: year|month` and a date or timestamp column."""
        super().validate(params, column, keys)
        if params["to"] not in ("year", "month"):
            raise ValueError("generalize 'to' must be 'year' or 'month'")
        if column.type not in ("date", "timestamp"):
            raise ValueError(f"generalize needs a date or timestamp column, not {column.type!r}")

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """The formatted year or month."""
        fmt = "yyyy" if ctx.config.protect.params["to"] == "year" else "yyyy-MM"
        return F.date_format(col, fmt)


@register_operator
class Bucket(Operator):
    """A number replaced by its range: fixed `width`, or explicit `boundaries`."""

    name = "bucket"
    mask_argument = "width"
    optional = frozenset({"width", "boundaries"})

    def validate(
        self, params: Mapping[str, Any], column: ColumnConfig, keys: Mapping[str, KeyConfig]
    ) -> None:
        """Exactly one of a positive `width` or increasing `boundaries`, on a numeric column."""
        super().validate(params, column, keys)
        if not (column.type in _NUMERIC or column.type.startswith("decimal")):
            raise ValueError(f"bucket needs a numeric column, not {column.type!r}")
        if ("width" in params) == ("boundaries" in params):
            raise ValueError("bucket needs exactly one of 'width' or 'boundaries'")
        if "width" in params and not (
            isinstance(params["width"], int | float) and params["width"] > 0
        ):
            raise ValueError("bucket 'width' must be a positive number")
        if "boundaries" in params:
            b = params["boundaries"]
            if (
                not isinstance(b, list)
                or len(b) < 1
                or not all(isinstance(x, int | float) for x in b)
                or sorted(b) != b
                or len(set(b)) != len(b)
            ):
                raise ValueError("bucket 'boundaries' must be an increasing list of numbers")

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """`"1000-1999"` style labels (width) or `"<0"`, `"0-999"`, `">=1000"` (boundaries)."""
        params = ctx.config.protect.params
        if "width" in params:
            width = params["width"]
            low = F.floor(col / F.lit(width)) * F.lit(width)
            label = F.concat(
                low.cast("long").cast("string"),
                F.lit("-"),
                (low + F.lit(width)).cast("long").cast("string"),
            )
            return _null_safe(col, label)
        bounds = params["boundaries"]
        expr = F.when(col < F.lit(bounds[0]), F.lit(f"<{bounds[0]}"))
        for lo, hi in itertools.pairwise(bounds):
            expr = expr.when((col >= F.lit(lo)) & (col < F.lit(hi)), F.lit(f"{lo}-{hi}"))
        expr = expr.otherwise(F.lit(f">={bounds[-1]}"))
        return _null_safe(col, expr)


class _SubjectOperator(Operator):
    """Per-subject protection: keys come from the subject key store (`io.subject_store`)."""

    reversible = True
    per_subject = True
    cryptographic = True
    erasure = "subject_key"
    kind = ""
    reveal_kind = ""

    def key_name(self, params: Mapping[str, Any]) -> str | None:
        """The subject KEK, resolved by the pipeline from `erasure.kek`."""
        return KEK_SENTINEL

    def subject_args(self, table: str, column: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Extra arguments of the subject UDF (the FF1 alphabet and tweak)."""
        return {}

    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """Needs `_subject_hash` and `_subject_wrapped` on the frame (the pipeline joins them)."""
        args = self.subject_args(ctx.table, ctx.column, ctx.config.protect.params)
        return subject_expr(self.kind, ctx.table, ctx.column, _key(ctx), col.cast("string"), **args)

    def reveal(self, col: Column, ctx: ColumnContext) -> Column:
        """The plaintext of a protected value (null once its subject is erased); `ctx.key` is
        the subject KEK and the frame carries `_subject_wrapped`."""
        args = self.subject_args(ctx.table, ctx.column, ctx.config.protect.params)
        return subject_expr(self.reveal_kind, ctx.table, ctx.column, _key(ctx), col, **args)


@register_operator
class EncryptSubject(_SubjectOperator):
    """AES-256-GCM under the data subject's own key: erasable by destroying that key."""

    name = "encrypt_subject"
    kind = "encrypt"
    reveal_kind = "decrypt"

    def well_formed(
        self, col: Column, params: Mapping[str, Any], key: KeyHandle | None
    ) -> Column | None:
        """Format byte 0x01, subject-key version 1, room for nonce and tag."""
        return (F.substring(col, 1, 5) == F.unhex(F.lit("0100000001"))) & (F.length(col) >= 33)


@register_operator
class TokenizeSubject(_SubjectOperator):
    """Deterministic AES-SIV token under a key derived from the subject's key (erasable)."""

    name = "tokenize_subject"
    kind = "tokenize"
    reveal_kind = "detokenize"

    def well_formed(
        self, col: Column, params: Mapping[str, Any], key: KeyHandle | None
    ) -> Column | None:
        """An AES-SIV token in base64url."""
        return col.rlike(r"^[A-Za-z0-9_-]{22,}$")


@register_operator
class FpeSubject(_FpeShape, _SubjectOperator):
    """FF1 format-preserving token under a key derived from the subject's key (erasable)."""

    name = "fpe_subject"
    kind = "fpe"
    reveal_kind = "unfpe"
    optional = frozenset({"alphabet", "chars", "tweak"})

    def validate(
        self, params: Mapping[str, Any], column: ColumnConfig, keys: Mapping[str, KeyConfig]
    ) -> None:
        """The same alphabet rules as `fpe`."""
        Fpe().validate({**params, "key": "_"}, column, {"_": KeyConfig(type="fpe")})
        super().validate(params, column, keys)

    def subject_args(self, table: str, column: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """The alphabet and the tweak (`<table>.<column>` by default)."""
        return {"alphabet": fpe_alphabet(params), "tweak": fpe_tweak(table, column, params)}
