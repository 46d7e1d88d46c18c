"""One exception tree for the whole product.

Messages name the file, table, column, key or role at fault and never carry a data value or key
material: they end up in logs, scheduler e-mails and tickets.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "ConfigError",
    "DecryptionError",
    "GateFailed",
    "KeyAccessError",
    "PolicyError",
    "ProtectionError",
    "PublishError",
    "RiskGateFailed",
    "SchemaDriftError",
    "SecurePipeError",
    "SourceError",
    "error_kind",
]


def error_kind(exc: BaseException) -> str:
    """What a log line or an audit record may say of an unexpected error: its class and, for
    Spark's errors, its error condition (e.g. `DELTA_FAILED_TO_MERGE_FIELDS`). Never the message
    text: Spark and Py4J messages can quote data values."""
    condition = getattr(exc, "getCondition", lambda: None)()
    return type(exc).__name__ + (f" [{condition}]" if condition else "")


class SecurePipeError(Exception):
    """Base of every error securepipe raises on purpose (exit code 1 unless said otherwise)."""

    exit_code: int = 1
    # Set by a command that already printed what it has to say about this error (e.g. the
    # result of a refused run with --json), so the entry point does not print it twice.
    reported: bool = False


class ConfigError(SecurePipeError):
    """The configuration is missing, unreadable or invalid; raised before Spark starts."""


class PolicyError(ConfigError):
    """A protection or access policy is inconsistent (unknown key, unsupported type, ...)."""


class AccessDenied(PolicyError):
    """A role asked for a table or column its access policy does not give it."""


class KeyAccessError(SecurePipeError):
    """A key could not be created, found, unwrapped or is stored unsafely."""


class DecryptionError(SecurePipeError):
    """A value could not be decrypted or detokenized.

    Deliberately opaque: wrong key, wrong version, wrong column binding and tampering all look the
    same to the caller, so the error cannot be used as an oracle.
    """

    def __init__(self, message: str = "value could not be decrypted") -> None:
        super().__init__(message)


class ProtectionError(SecurePipeError):
    """A value could not be protected (e.g. too short for format-preserving encryption)."""


class SourceError(SecurePipeError):
    """The landing data for a run is missing or unreadable."""


class SchemaDriftError(SourceError):
    """The landing files do not have the declared columns (fail closed on unclassified columns)."""


class PublishError(SecurePipeError):
    """Writing a Delta table failed."""


class GateFailed(SecurePipeError):
    """A compliance gate refused the batch: nothing was published (exit code 2).

    `result` carries the run's counts and verdicts when the job got that far.
    """

    exit_code = 2

    def __init__(self, message: str, result: object | None = None) -> None:
        super().__init__(message)
        self.result = result


class RiskGateFailed(GateFailed):
    """A role table's re-identification risk is above its policy (`risk:` with `action: fail`):
    that role table is not written, the rest of the run is (exit code 2)."""
