"""Cryptography: envelope format, tokens, key providers and the keyring."""

from __future__ import annotations

from securepipe.crypto.envelope import decrypt_value, encrypt_value, hmac_token

__all__ = ["decrypt_value", "encrypt_value", "hmac_token"]
