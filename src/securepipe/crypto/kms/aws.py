"""AWS KMS provider (boto3): GenerateDataKey to create, Decrypt to unwrap, Encrypt to re-wrap.

Every call carries an encryption context with the data key's name and version, so a wrapped key
cannot be swapped for another. Credentials come from the standard AWS environment (variables,
profile, instance role); none is read from securepipe's configuration.
"""

from __future__ import annotations

from typing import Any

from securepipe.crypto.kms.base import KmsSpec
from securepipe.errors import KeyAccessError

__all__ = ["AwsKms"]


class AwsKms:
    """KEK = the KMS key `key_id` in `region` (optionally at `endpoint_url`)."""

    def __init__(self, spec: KmsSpec) -> None:
        try:
            import boto3
        except ImportError:  # pragma: no cover - depends on the install
            raise KeyAccessError(
                "provider 'aws-kms' needs boto3: pip install 'securepipe[aws]'"
            ) from None
        self._key_id = spec.location
        endpoint = spec.param("endpoint_url") or None
        self._client: Any = boto3.client(
            "kms", region_name=spec.param("region") or None, endpoint_url=endpoint
        )
        self._id = f"aws-kms:{self._key_id}"

    @staticmethod
    def _context(context: str) -> dict[str, str]:
        return {"securepipe": context}

    def _fail(self, action: str, context: str, exc: Exception) -> KeyAccessError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        return KeyAccessError(f"AWS KMS {action} of data key {context!r} failed ({code})")

    def generate_wrapped(self, length: int, context: str) -> bytes:
        """GenerateDataKey: the plaintext copy is dropped, only the ciphertext blob is kept."""
        try:
            resp = self._client.generate_data_key(
                KeyId=self._key_id, NumberOfBytes=length, EncryptionContext=self._context(context)
            )
        except Exception as exc:
            raise self._fail("GenerateDataKey", context, exc) from None
        blob: bytes = resp["CiphertextBlob"]
        return blob

    def wrap(self, key: bytes, context: str) -> bytes:
        """Encrypt an existing data key (re-wrap)."""
        try:
            resp = self._client.encrypt(
                KeyId=self._key_id, Plaintext=key, EncryptionContext=self._context(context)
            )
        except Exception as exc:
            raise self._fail("Encrypt", context, exc) from None
        blob: bytes = resp["CiphertextBlob"]
        return blob

    def unwrap(self, wrapped: bytes, context: str) -> bytes:
        """Decrypt a wrapped data key; the encryption context must match."""
        try:
            resp = self._client.decrypt(
                CiphertextBlob=wrapped, KeyId=self._key_id, EncryptionContext=self._context(context)
            )
        except Exception as exc:
            raise self._fail("Decrypt", context, exc) from None
        key: bytes = resp["Plaintext"]
        return key

    def kek_id(self) -> str:
        """The key id as configured."""
        return self._id
