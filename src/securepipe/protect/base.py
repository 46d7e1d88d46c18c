"""The operator contract: validate parameters early, then build a column expression."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pyspark.sql import Column

from securepipe.config import ColumnConfig, KeyConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.errors import PolicyError

__all__ = ["ColumnContext", "Operator"]


@dataclass(frozen=True)
class ColumnContext:
    """What an operator knows when it builds the expression of one column."""

    table: str
    column: str
    config: ColumnConfig
    key: KeyHandle | None


class Operator(ABC):
    """One protection transform. Subclasses set `name`, `key_type` and `params`."""

    name: ClassVar[str]
    key_type: ClassVar[str | None] = None
    required: ClassVar[frozenset[str]] = frozenset()
    optional: ClassVar[frozenset[str]] = frozenset()
    reversible: ClassVar[bool] = False
    per_subject: ClassVar[bool] = False
    # Outputs are ciphertexts or tokens, checked by shape (`well_formed`) instead of by the leak
    # scan (which a format-preserving token would trip on purpose).
    cryptographic: ClassVar[bool] = False
    # Seals values with AES-GCM and a random nonce under a column key (counted against the key
    # version's encryption budget).
    random_nonce: ClassVar[bool] = False
    # What stays of a value after its subject is erased (see `erasure_class`).
    erasure: ClassVar[str] = "masked"
    # Deterministic and keyed the same way every night: equal inputs give equal outputs, so
    # the column can be a table key, a join key or a role's `token` column.
    joinable: ClassVar[bool] = False
    # The stored value is the input itself (`keep`).
    passes_value: ClassVar[bool] = False
    # Nothing is stored (`drop`): the column is left out of the published table.
    removes_column: ClassVar[bool] = False
    # Masks a role policy can name: `mask:<shorthand>` (fixed parameters), or
    # `mask:<name>:<N>` setting the integer parameter `mask_argument`.
    mask_shorthands: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    mask_argument: ClassVar[str | None] = None

    def validate(
        self, params: Mapping[str, Any], column: ColumnConfig, keys: Mapping[str, KeyConfig]
    ) -> None:
        """Check parameters against the column and the declared keys.

        Raises:
            ValueError: with a message that names the parameter at fault (never a value).
        """
        expected = self.required | self.optional | ({"key"} if self.key_type else set())
        unknown = set(params) - expected
        if unknown:
            raise ValueError(f"operator {self.name!r} has no parameter(s) {sorted(unknown)}")
        missing = (self.required | ({"key"} if self.key_type else set())) - set(params)
        if missing:
            raise ValueError(f"operator {self.name!r} needs parameter(s) {sorted(missing)}")
        if self.key_type:
            key_name = params["key"]
            key = keys.get(key_name)
            if key is None:
                raise ValueError(f"unknown key {key_name!r} (declare it under keys:)")
            self._check_key_type(params, key, key_name)

    def _check_key_type(self, params: Mapping[str, Any], key: KeyConfig, key_name: str) -> None:
        if key.type != self.key_type:
            raise ValueError(
                f"key {key_name!r} has type {key.type!r}; operator {self.name!r} "
                f"needs a {self.key_type!r} key"
            )

    def is_reversible(self, params: Mapping[str, Any]) -> bool:
        """Whether an authorised reader can get the value back."""
        return self.reversible

    def erasure_class(self, params: Mapping[str, Any]) -> str:
        """What old table versions hold of a value once its data subject is erased.

        `subject_key`: shredded at once (the subject's key is destroyed); `column_key`: readable
        with a live column key until VACUUM removes the old files; `token`: an irreversible but
        linkable token until VACUUM; `masked`: a derived value in clear until VACUUM; `nothing`:
        nothing of the value is stored; `clear`: the value itself (never allowed for personal data).
        """
        return self.erasure

    def accepts(self, col: Column, params: Mapping[str, Any]) -> Column | None:
        """True where an input value can be protected (`None`: every value can); a row with a
        value outside the domain is quarantined as `INVALID_FORMAT:<column>`."""
        return None

    def well_formed(
        self, col: Column, params: Mapping[str, Any], key: KeyHandle | None
    ) -> Column | None:
        """True where a stored value has this operator's output shape (`None`: nothing to check)."""
        return None

    def key_name(self, params: Mapping[str, Any]) -> str | None:
        """The key this operator uses with `params`, if any."""
        return str(params["key"]) if self.key_type else None

    @abstractmethod
    def build(self, col: Column, ctx: ColumnContext) -> Column | None:
        """The protected expression of `col`, or `None` to drop the column."""

    def reveal(self, col: Column, ctx: ColumnContext) -> Column:
        """The plaintext (string) of a stored value, for authorised readers; `ctx.key` is the
        operator's key (`key_name`). Per-subject operators also need the frame's
        `_subject_wrapped` column (joined from the subject key store).

        Raises:
            PolicyError: the operator cannot be reversed (the message names table and column).
        """
        params = ctx.config.protect.params
        kind = f" {params['kind']}" if "kind" in params else ""
        raise PolicyError(
            f"column {ctx.column!r} of table {ctx.table!r} is protected by {self.name!r}{kind}, "
            "which cannot be reversed"
        )

    def reencrypt(self, col: Column, ctx: ColumnContext) -> Column | None:
        """The stored value re-protected under the current version of its key (after a
        rotation), or `None` when the operator's output does not depend on a key version."""
        return None

    def describe(self, params: Mapping[str, Any]) -> dict[str, str]:
        """Column metadata recorded in the Delta schema (operator and key; nothing secret)."""
        meta = {"securepipe.op": self.name}
        key = self.key_name(params)
        if key:
            meta["securepipe.key"] = key
        return meta
