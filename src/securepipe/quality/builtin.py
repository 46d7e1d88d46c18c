"""Built-in compliance checks, always on: PII leak scan, well-formed protection, key rules.

Every check returns counts, never values. The leak scan runs on the *protected* batch: a hit means
plaintext personal data is about to be published (e.g. an e-mail column declared `keep`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, StringType

from securepipe.config import ComplianceConfig, DetectorConfig, TableConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.crypto.tokens import fpe_min_length
from securepipe.protect.operators import fpe_alphabet

__all__ = [
    "DEFAULT_DETECTORS",
    "CheckResult",
    "detectors",
    "leak_scan_exprs",
    "token_check_exprs",
]

# Boundaries exclude the base64url alphabet, so a run of digits inside a token never matches.
_B = r"(?<![A-Za-z0-9_-])"
_E = r"(?![A-Za-z0-9_-])"
DEFAULT_DETECTORS: dict[str, DetectorConfig] = {
    "email": DetectorConfig(
        pattern=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    ),
    "us_ssn": DetectorConfig(pattern=_B + r"\d{3}-\d{2}-\d{4}" + _E),
    "card_number": DetectorConfig(pattern=_B + r"(?:\d[ -]?){12,18}\d" + _E, luhn=True),
    "phone": DetectorConfig(
        pattern=_B + r"(?:\+\d{1,3}[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}" + _E
    ),
    "iban": DetectorConfig(
        pattern=_B + r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?" + _E
    ),
}


@dataclass
class CheckResult:
    """One built-in check: its name, pass/fail and the counts behind it (no values)."""

    name: str
    passed: bool
    counts: dict[str, int] = field(default_factory=dict)
    detail: str = ""


def detectors(compliance: ComplianceConfig) -> dict[str, DetectorConfig]:
    """The active detectors: defaults, overridden or extended by configuration."""
    merged = {**DEFAULT_DETECTORS, **compliance.detectors}
    return {name: d for name, d in merged.items() if d.enabled}


def _luhn_ok(digits: Column) -> Column:
    # Sum the Luhn digits right to left with a higher-order function (no Python UDF).
    rev = F.reverse(digits)
    n = F.length(rev)

    def term(acc: Column, i: Column) -> Column:
        d = F.substring(rev, i + 1, 1).cast("int")
        doubled = F.when(d * 2 > 9, d * 2 - 9).otherwise(d * 2)
        return acc + F.when(i % 2 == 1, doubled).otherwise(d)

    total = F.aggregate(F.sequence(F.lit(0), n - 1), F.lit(0), term)
    return (n >= 13) & (total % 10 == 0)


# Cheap necessary conditions of the default detectors (character tests, no lookaround): a value
# failing its detector's hint cannot match the detector, so the costly pattern (lookbehinds,
# alternations, Luhn) runs only on the few values that pass. Keyed by pattern, so a detector whose
# pattern is overridden in the configuration gets no hint and always runs in full.
_HINTS: dict[str, Callable[[Column], Column]] = {
    DEFAULT_DETECTORS["email"].pattern: lambda c: F.instr(c, "@") > 0,
    DEFAULT_DETECTORS["us_ssn"].pattern: lambda c: c.rlike("[0-9]{3}-[0-9]{2}-[0-9]"),
    DEFAULT_DETECTORS["card_number"].pattern: (
        lambda c: F.length(F.regexp_replace(c, "[^0-9]", "")) >= 13
    ),
    DEFAULT_DETECTORS["phone"].pattern: lambda c: c.rlike("[0-9][)]?[ .-][0-9]"),
    DEFAULT_DETECTORS["iban"].pattern: lambda c: c.rlike("[A-Z]{2}[0-9]{2}"),
}


def matches(col: Column, detector: DetectorConfig) -> Column:
    """True where `col` holds a value the detector recognises (Luhn-checked when asked)."""
    hint = _HINTS.get(detector.pattern)
    if not detector.luhn:
        full = col.rlike(detector.pattern)
    else:
        candidates = F.regexp_extract_all(col, F.lit(f"({detector.pattern})"), 1)
        # The regex test first: And short-circuits, so Luhn runs only on candidate rows.
        full = col.rlike(detector.pattern) & F.exists(
            candidates, lambda c: _luhn_ok(F.regexp_replace(c, "[^0-9]", ""))
        )
    # And short-circuits left to right: the hint first.
    return hint(col) & full if hint is not None else full


def scanned_columns(df: DataFrame, table_cfg: TableConfig) -> list[str]:
    """String and binary output columns that the leak scan reads.

    Exempt: columns declared `clear_text`, and columns whose every value is checked by shape
    instead (`well_formed_protection`): AES-GCM envelopes (random bytes), format-preserving
    tokens (shaped like the data on purpose) and hmac/daead tokens (base64url only, which no
    detector can match: e-mails need `@`, the others need boundaries outside base64url).
    """
    out = []
    for f in df.schema.fields:
        cfg = table_cfg.columns.get(f.name)
        exempt = ("fpe", "encrypt", "tokenize", "encrypt_subject", "tokenize_subject")
        if cfg is None or cfg.clear_text or cfg.protect.op in exempt:
            continue
        if isinstance(f.dataType, StringType | BinaryType):
            out.append(f.name)
    return out


def leak_scan_exprs(
    df: DataFrame, table_cfg: TableConfig, compliance: ComplianceConfig
) -> dict[str, Column]:
    """`{"leak:<column>:<detector>": count expression}` for one aggregation pass."""
    exprs = {}
    active = detectors(compliance)
    for name in scanned_columns(df, table_cfg):
        text = F.col(name).cast("string")
        for det_name, det in active.items():
            hit = F.coalesce(matches(text, det), F.lit(False))
            exprs[f"leak:{name}:{det_name}"] = F.sum(F.when(hit, 1).otherwise(0))
    return exprs


def _well_formed(
    name: str, op: str, params: Mapping[str, object], handle: KeyHandle | None
) -> Column | None:
    c = F.col(name)
    if op == "encrypt" and handle is not None:
        version = F.conv(F.hex(F.substring(c, 2, 4)), 16, 10).cast("long")
        return (
            (F.substring(c, 1, 1) == F.unhex(F.lit("01")))
            & (F.length(c) >= 33)
            & version.isin(handle.versions)
        )
    if op == "encrypt_subject":
        return (F.substring(c, 1, 5) == F.unhex(F.lit("0100000001"))) & (F.length(c) >= 33)
    if op == "tokenize_subject":
        return c.rlike(r"^[A-Za-z0-9_-]{22,}$")
    if op == "tokenize" and params.get("kind") == "hmac":
        return c.rlike(r"^[A-Za-z0-9_-]{43}$")
    if op == "tokenize" and params.get("kind") == "daead":
        return c.rlike(r"^[A-Za-z0-9_-]{27,}$")
    if op == "fpe":
        alphabet = fpe_alphabet(params)
        klass = "".join("\\" + ch if ch in "\\]^-[&" else ch for ch in alphabet)
        kept = F.regexp_replace(c, f"[^{klass}]", "")
        return F.length(kept) >= fpe_min_length(alphabet)
    return None


def token_check_exprs(
    table_cfg: TableConfig, keys: Mapping[str, KeyHandle], columns: list[str]
) -> dict[str, Column]:
    """`{"malformed:<column>": count expression}` for every cryptographically protected column."""
    exprs = {}
    for name in columns:
        cfg = table_cfg.columns.get(name)
        if cfg is None:
            continue
        params = cfg.protect.params
        key = params.get("key")
        ok = _well_formed(name, cfg.protect.op, params, keys.get(str(key)) if key else None)
        if ok is not None:
            bad = F.col(name).isNotNull() & ~F.coalesce(ok, F.lit(False))
            exprs[f"malformed:{name}"] = F.sum(F.when(bad, 1).otherwise(0))
    return exprs
