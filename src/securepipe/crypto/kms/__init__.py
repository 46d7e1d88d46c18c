"""Key-encryption-key (KEK) providers behind one small interface (`base.KmsProvider`).

A provider wraps and unwraps data keys; it never hands out its KEK. `KmsSpec` is the serialisable
description shipped to executors so that each Python worker can open the provider itself: it holds
where the KEK is and how to reach it, never a secret (PINs and credentials come from the
environment of the process that opens the provider). The optional libraries (boto3,
python-pkcs11) are imported only when their provider is opened.
"""

from __future__ import annotations

from securepipe.crypto.kms.aws import AwsKms
from securepipe.crypto.kms.base import KmsProvider, KmsSpec, generate_wrapped
from securepipe.crypto.kms.local import LocalKms
from securepipe.crypto.kms.pkcs11 import Pkcs11Kms
from securepipe.errors import KeyAccessError

__all__ = ["KmsProvider", "KmsSpec", "generate_wrapped", "open_provider"]


def open_provider(spec: KmsSpec, *, create: bool = False) -> KmsProvider:
    """Open the provider that `spec` describes.

    Args:
        spec: which provider and where its KEK lives.
        create: create a missing KEK (driver-side `keys init` and `demo` only).

    Raises:
        KeyAccessError: unknown provider, or the provider refuses to open.
    """
    if spec.provider == "local":
        return LocalKms(spec.location, create=create)
    if spec.provider == "pkcs11":
        return Pkcs11Kms(spec, create=create)
    if spec.provider == "aws-kms":
        return AwsKms(spec)
    raise KeyAccessError(f"unknown KMS provider {spec.provider!r}")
