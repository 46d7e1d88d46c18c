"""Built-in compliance checks, always on: PII leak scan, well-formed protection, key rules.

Every check returns counts, never values. The leak scan runs on the *protected* batch: a hit means
plaintext personal data is about to be published (e.g. an e-mail column declared `keep`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, DecimalType, IntegralType, StringType

from securepipe.config import Classification, ComplianceConfig, DetectorConfig, TableConfig
from securepipe.crypto.keyring import KeyHandle
from securepipe.protect.registry import operator_for

__all__ = [
    "DEFAULT_DETECTORS",
    "NUMERIC_DETECTORS",
    "STRICT_DETECTORS",
    "CheckResult",
    "detectors",
    "leak_scan_exprs",
    "token_check_exprs",
]

# Digit detectors are bounded by "no digit" (not "no letter"), so a value glued to a label
# (`ssn_123-45-6789`, `card4111...`) is caught; tokens and envelopes never reach the scan (they
# are checked by shape). Separators: '-', ' ' and '.', the same one throughout a value.
_ND = r"(?<![0-9])"
_NE = r"(?![0-9])"
DEFAULT_DETECTORS: dict[str, DetectorConfig] = {
    "email": DetectorConfig(
        pattern=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    ),
    # Area 001-899 but 666, group 01-99, serial 0001-9999 (SSA rules): dates, times and
    # `ddd-dd-dddd` order numbers with a zero group do not trip it.
    "us_ssn": DetectorConfig(
        pattern=_ND + r"(?!000|666|9\d\d)\d{3}(?<s>[-. ])(?!00)\d{2}\k<s>(?!0000)\d{4}" + _NE
    ),
    # 13-19 digits, bare or in groups of four (Amex 4-6-5) with one separator; Luhn-checked.
    "card_number": DetectorConfig(
        pattern=_ND
        + r"(?:\d{13,19}|\d{4}(?<c>[-. ])\d{4}\k<c>\d{4}\k<c>\d{1,7}"
        + r"|\d{4}(?<a>[-. ])\d{6}\k<a>\d{5})"
        + _NE,
        luhn=True,
    ),
    # North American numbers with separators or parentheses, and international numbers written
    # with a leading + (E.164, with or without spaces, dots, dashes or parentheses).
    "phone": DetectorConfig(
        pattern=_ND
        + r"(?:\(\d{3}\) ?\d{3}[ .-]\d{4}|\d{3}(?<p>[ .-])\d{3}\k<p>\d{4}"
        + r"|\+[1-9](?:[ .()-]{0,2}\d){7,14})"
        + _NE
    ),
    # Country code, check digits, 11-30 alphanumerics (grouped by four or not), any case;
    # verified with the ISO 13616 mod-97 check.
    "iban": DetectorConfig(
        pattern=r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?"
        + r"(?![A-Za-z0-9])",
        checksum="mod97",
    ),
}
# Numeric columns (an SSN or a card number declared `long`) are scanned as their decimal text
# with whole-value patterns.
NUMERIC_DETECTORS: dict[str, DetectorConfig] = {
    "us_ssn": DetectorConfig(pattern=r"^(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4}$"),
    "card_number": DetectorConfig(pattern=r"^\d{13,19}$", luhn=True),
}


# `compliance.strict: true`: digits alone, which the default detectors leave to their separators
# (a bare 9- or 10-digit number is as often an id or an amount). NANP phones: area and exchange
# codes start with 2-9.
STRICT_DETECTORS: dict[str, DetectorConfig] = {
    "bare_ssn": DetectorConfig(
        pattern=_ND + r"(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4}" + _NE
    ),
    "bare_phone": DetectorConfig(pattern=_ND + r"[2-9]\d{2}[2-9]\d{6}" + _NE),
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
    strict = STRICT_DETECTORS if compliance.strict else {}
    merged = {**DEFAULT_DETECTORS, **strict, **compliance.detectors}
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


def _mod97_ok(candidate: Column) -> Column:
    # ISO 13616: move the first four characters to the end, letters to 10..35, then the number
    # must be 1 modulo 97 — folded digit by digit, so no big integers.
    text = F.upper(F.regexp_replace(candidate, " ", ""))
    moved = F.concat(F.substring(text, 5, 64), F.substring(text, 1, 4))
    digits = F.array_join(
        F.transform(
            F.split(moved, ""),
            lambda ch: F.when(ch.rlike("^[0-9]$"), ch).otherwise(
                (F.ascii(ch) - F.lit(55)).cast("string")
            ),
        ),
        "",
    )
    n = F.length(digits)
    total = F.aggregate(
        F.sequence(F.lit(1), n),
        F.lit(0).cast("long"),
        lambda acc, i: (acc * 10 + F.substring(digits, i, 1).cast("long")) % 97,
    )
    return (F.length(text) >= 15) & (total == 1)


_CHECKS: dict[str, Callable[[Column], Column]] = {
    "luhn": lambda c: _luhn_ok(F.regexp_replace(c, "[^0-9]", "")),
    "mod97": _mod97_ok,
}


# Cheap necessary conditions of the default detectors (character tests, no lookaround): a value
# failing its detector's hint cannot match the detector, so the costly pattern (lookbehinds,
# alternations, checksums) runs only on the few values that pass. Keyed by pattern, so a
# detector whose pattern is overridden in the configuration gets no hint and always runs in full.
_HINTS: dict[str, Callable[[Column], Column]] = {
    DEFAULT_DETECTORS["email"].pattern: lambda c: F.instr(c, "@") > 0,
    DEFAULT_DETECTORS["us_ssn"].pattern: lambda c: c.rlike("[0-9]{3}[-. ][0-9]{2}[-. ][0-9]"),
    DEFAULT_DETECTORS["card_number"].pattern: (
        lambda c: F.length(F.regexp_replace(c, "[^0-9]", "")) >= 13
    ),
    DEFAULT_DETECTORS["phone"].pattern: lambda c: c.rlike("[+][0-9]|[0-9][). -][0-9]"),
    DEFAULT_DETECTORS["iban"].pattern: lambda c: c.rlike("[A-Za-z]{2}[0-9]{2}"),
}


def matches(col: Column, detector: DetectorConfig) -> Column:
    """True where `col` holds a value the detector recognises (checksum-verified when asked)."""
    hint = _HINTS.get(detector.pattern)
    check = _CHECKS.get(detector.checksum or ("luhn" if detector.luhn else ""))
    if check is None:
        full = col.rlike(detector.pattern)
    else:
        # Named groups would shift a wrapping group's number: extract the whole match (group 0).
        candidates = F.regexp_extract_all(col, F.lit(detector.pattern), 0)
        # The regex test first: And short-circuits, so the checksum runs only on candidate rows.
        full = col.rlike(detector.pattern) & F.exists(candidates, check)
    # And short-circuits left to right: the hint first.
    return hint(col) & full if hint is not None else full


def scanned_columns(df: DataFrame, table_cfg: TableConfig) -> list[str]:
    """Output columns that the leak scan reads.

    Exempt: columns declared `clear_text`, and columns whose every value is checked by shape
    instead (`Operator.well_formed`): envelopes (random bytes), format-preserving tokens (shaped
    like the data on purpose) and base64url tokens (which no detector can match). String and
    binary columns are scanned for every detector; numeric columns that are not `public` are
    scanned for the digit-only detectors (an SSN or a card number declared `long`).
    """
    out = []
    for f in df.schema.fields:
        cfg = table_cfg.columns.get(f.name)
        if cfg is None or cfg.clear_text or operator_for(cfg).cryptographic:
            continue
        text = isinstance(f.dataType, StringType | BinaryType)
        number = isinstance(f.dataType, IntegralType | DecimalType)
        if text or (number and cfg.classification != Classification.PUBLIC):
            out.append(f.name)
    return out


def leak_scan_exprs(
    df: DataFrame, table_cfg: TableConfig, compliance: ComplianceConfig
) -> dict[str, Column]:
    """`{"leak:<column>:<detector>": count expression}` for one aggregation pass."""
    exprs = {}
    active = detectors(compliance)
    numeric = {
        f.name for f in df.schema.fields if isinstance(f.dataType, IntegralType | DecimalType)
    }
    decimal = {f.name for f in df.schema.fields if isinstance(f.dataType, DecimalType)}
    for name in scanned_columns(df, table_cfg):
        text = F.col(name).cast("string")
        forms = [text]
        if name in decimal:
            # A decimal's text carries a point and its scale (`4111111111111111.00`), which no
            # whole-value pattern matches: it is also read as its integer when the fraction is
            # zero (a card number or SSN shifted into a money column) and as its unscaled digits
            # (for the Luhn-checked card detector only: any 7-digit amount would look like an SSN).
            forms.append(F.regexp_replace(text, r"\.0*$", ""))
            unscaled = F.regexp_replace(F.regexp_replace(text, r"\.", ""), r"^0+(?=\d)", "")
        for det_name, det in (NUMERIC_DETECTORS if name in numeric else active).items():
            hit = F.lit(False)
            checked = [*forms, unscaled] if name in decimal and det.luhn else forms
            for form in checked:
                hit = hit | F.coalesce(matches(form, det), F.lit(False))
            exprs[f"leak:{name}:{det_name}"] = F.sum(F.when(hit, 1).otherwise(0))
    return exprs


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
        operator = operator_for(cfg)
        ok = operator.well_formed(F.col(name), params, keys.get(str(key)) if key else None)
        if ok is not None:
            bad = F.col(name).isNotNull() & ~F.coalesce(ok, F.lit(False))
            exprs[f"malformed:{name}"] = F.sum(F.when(bad, 1).otherwise(0))
    return exprs
