"""Envelope encryption and HMAC tokens, without Spark."""

from __future__ import annotations

import hashlib
import os

import pytest

from securepipe.crypto.envelope import (
    HEADER_LEN,
    associated_data,
    decrypt_value,
    encrypt_many,
    encrypt_value,
    envelope_version,
    hmac_many,
    hmac_token,
)
from securepipe.errors import DecryptionError

KEY = os.urandom(32)
VALUES = ["Ada Lovelace", "", "x" * 100_000, "Zoë Ñúñez", "山田太郎", "🙂 emoji 🔐"]


@pytest.mark.parametrize("value", VALUES, ids=["ascii", "empty", "long", "accents", "cjk", "emoji"])
def test_encrypt_decrypt_round_trip(value: str) -> None:
    envelope = encrypt_value(KEY, 3, "customers", "full_name", value)
    assert decrypt_value({3: KEY}, "customers", "full_name", envelope) == value


def test_envelope_layout_is_version_key_version_nonce_ciphertext_tag() -> None:
    envelope = encrypt_value(KEY, 7, "t", "c", "abc")
    assert envelope[0] == 0x01
    assert envelope[1:5] == (7).to_bytes(4, "big")
    assert envelope_version(envelope) == 7
    assert len(envelope) == HEADER_LEN + 12 + len(b"abc") + 16


def test_encryption_is_randomised() -> None:
    a, b = (encrypt_value(KEY, 1, "t", "c", "same") for _ in range(2))
    assert a != b
    assert a[5:17] != b[5:17]  # fresh nonce


def test_ciphertext_copied_to_another_column_fails() -> None:
    envelope = encrypt_value(KEY, 1, "customers", "full_name", "Ada")
    with pytest.raises(DecryptionError):
        decrypt_value({1: KEY}, "customers", "street_address", envelope)


def test_ciphertext_copied_to_another_table_fails() -> None:
    envelope = encrypt_value(KEY, 1, "customers", "full_name", "Ada")
    with pytest.raises(DecryptionError):
        decrypt_value({1: KEY}, "employees", "full_name", envelope)


def test_wrong_key_fails() -> None:
    envelope = encrypt_value(KEY, 1, "t", "c", "Ada")
    with pytest.raises(DecryptionError):
        decrypt_value({1: os.urandom(32)}, "t", "c", envelope)


def test_relabelled_key_version_fails() -> None:
    envelope = bytearray(encrypt_value(KEY, 1, "t", "c", "Ada"))
    envelope[1:5] = (2).to_bytes(4, "big")
    with pytest.raises(DecryptionError):
        decrypt_value({1: KEY, 2: KEY}, "t", "c", bytes(envelope))


def test_unknown_key_version_fails() -> None:
    envelope = encrypt_value(KEY, 5, "t", "c", "Ada")
    with pytest.raises(DecryptionError):
        decrypt_value({1: KEY}, "t", "c", envelope)


@pytest.mark.parametrize("position", [0, 6, 20, -1])
def test_tampered_byte_fails(position: int) -> None:
    envelope = bytearray(encrypt_value(KEY, 1, "t", "c", "Ada Lovelace"))
    envelope[position] ^= 0x01
    with pytest.raises(DecryptionError):
        decrypt_value({1: KEY}, "t", "c", bytes(envelope))


def test_truncated_envelope_fails() -> None:
    envelope = encrypt_value(KEY, 1, "t", "c", "Ada")
    with pytest.raises(DecryptionError):
        decrypt_value({1: KEY}, "t", "c", envelope[:20])


def test_decryption_error_message_is_opaque() -> None:
    envelope = encrypt_value(KEY, 1, "t", "c", "Ada Lovelace")
    with pytest.raises(DecryptionError) as err:
        decrypt_value({1: os.urandom(32)}, "t", "c", envelope)
    assert "Ada" not in str(err.value) and KEY.hex() not in str(err.value)


def test_batch_encrypt_keeps_nulls_and_matches_single_value_format() -> None:
    out = encrypt_many(KEY, 2, "t", "c", ["a", None, "b"])
    assert out[1] is None
    assert out[0] is not None and out[2] is not None
    assert [decrypt_value({2: KEY}, "t", "c", e) for e in (out[0], out[2])] == ["a", "b"]


def test_aad_binds_table_column_and_version() -> None:
    assert associated_data("customers", "ssn", 4) == b"securepipe:customers.ssn:v4"


def test_hmac_token_is_deterministic_and_keyed() -> None:
    other = os.urandom(32)
    assert hmac_token(KEY, "ada@example.com") == hmac_token(KEY, "ada@example.com")
    assert hmac_token(KEY, "ada@example.com") != hmac_token(other, "ada@example.com")
    assert hmac_token(KEY, "ada@example.com") != hmac_token(KEY, "bob@example.com")


def test_hmac_token_is_not_an_unkeyed_hash() -> None:
    token = hmac_token(KEY, "123-45-6789")
    unkeyed = hashlib.sha256(b"123-45-6789").digest()
    import base64

    assert token != base64.urlsafe_b64encode(unkeyed).rstrip(b"=").decode()
    assert len(token) == 43


def test_hmac_batch_matches_single_and_keeps_nulls() -> None:
    values = ["a", None, "山田", ""]
    out = hmac_many(KEY, values)
    assert out == [hmac_token(KEY, "a"), None, hmac_token(KEY, "山田"), hmac_token(KEY, "")]


def test_prepared_hmac_equals_the_standard_library() -> None:
    import hmac as std

    from securepipe.crypto._primitives import hmac_prepared

    for key in (os.urandom(32), os.urandom(64), os.urandom(100), b""):
        digest = hmac_prepared(key)
        for message in (b"", b"a", "山田".encode(), os.urandom(1000)):
            assert digest(message) == std.digest(key, message, "sha256")
