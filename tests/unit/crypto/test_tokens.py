"""Reversible tokens (AES-SIV) and format-preserving tokens, without Spark; property tests."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securepipe.crypto.envelope import decrypt_value, encrypt_many, hmac_many
from securepipe.crypto.tokens import (
    ALPHABETS,
    FpeDomainError,
    daead_detokenize_many,
    daead_tokenize_many,
    fpe_detokenize_many,
    fpe_tokenize_many,
)
from securepipe.errors import DecryptionError

SIV_KEY = os.urandom(64)
FPE_KEY = os.urandom(32)
AEAD_KEY = os.urandom(32)
HMAC_KEY = os.urandom(32)
DIGITS = ALPHABETS["digits"]


def test_daead_is_deterministic_and_reversible() -> None:
    a = daead_tokenize_many(SIV_KEY, "phone_token", 1, ["+1-555-0100", "+1-555-0100", None])
    assert a[0] == a[1] and a[2] is None
    assert daead_detokenize_many({1: SIV_KEY}, "phone_token", a) == ["+1-555-0100"] * 2 + [None]


def test_daead_tampered_token_fails() -> None:
    token = daead_tokenize_many(SIV_KEY, "k", 1, ["secret"])[0]
    assert token is not None
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(DecryptionError):
        daead_detokenize_many({1: SIV_KEY}, "k", [flipped])


def test_daead_token_under_another_key_name_fails() -> None:
    token = daead_tokenize_many(SIV_KEY, "phone_token", 1, ["secret"])
    with pytest.raises(DecryptionError):
        daead_detokenize_many({1: SIV_KEY}, "email_token", token)


def test_daead_destroyed_version_fails() -> None:
    token = daead_tokenize_many(SIV_KEY, "k", 1, ["secret"])
    with pytest.raises(DecryptionError):
        daead_detokenize_many({2: os.urandom(64)}, "k", token)


def test_fpe_keeps_the_ssn_format_and_reverses() -> None:
    ssns = ["123-45-6789", "987-65-4321", None]
    tokens = fpe_tokenize_many(FPE_KEY, DIGITS, b"", ssns)
    assert tokens[2] is None
    for ssn, token in zip(ssns[:2], tokens[:2], strict=True):
        assert token is not None and re.fullmatch(r"\d{3}-\d{2}-\d{4}", token)
        assert token != ssn
    assert fpe_detokenize_many(FPE_KEY, DIGITS, b"", tokens) == ssns


def test_fpe_value_too_short_is_refused_without_the_value() -> None:
    with pytest.raises(FpeDomainError) as err:
        fpe_tokenize_many(FPE_KEY, DIGITS, b"", ["12-34"])
    assert "12" not in str(err.value)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_encrypt_round_trips_any_unicode(value: str) -> None:
    envelope = encrypt_many(AEAD_KEY, 1, "t", "c", [value])[0]
    assert envelope is not None
    assert decrypt_value({1: AEAD_KEY}, "t", "c", envelope) == value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_daead_round_trips_any_unicode(value: str) -> None:
    tokens = daead_tokenize_many(SIV_KEY, "k", 3, [value])
    assert daead_detokenize_many({3: SIV_KEY}, "k", tokens) == [value]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("0123456789-() /"), min_size=0, max_size=40).filter(
        lambda s: sum(c.isdigit() for c in s) >= 6
    )
)
def test_fpe_round_trips_and_preserves_non_alphabet_characters(value: str) -> None:
    token = fpe_tokenize_many(FPE_KEY, DIGITS, b"t", [value])[0]
    assert token is not None and len(token) == len(value)
    assert [c for c in token if not c.isdigit()] == [c for c in value if not c.isdigit()]
    assert fpe_detokenize_many(FPE_KEY, DIGITS, b"t", [token]) == [value]


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 4096, 1_000_000])
def test_edge_lengths_round_trip(length: int) -> None:
    value = "é" * length
    envelope = encrypt_many(AEAD_KEY, 1, "t", "c", [value])[0]
    assert envelope is not None
    assert decrypt_value({1: AEAD_KEY}, "t", "c", envelope) == value


def test_no_repeated_nonce_across_one_million_encryptions() -> None:
    envelopes = encrypt_many(AEAD_KEY, 1, "t", "c", [""] * 1_000_000)
    nonces = {e[5:17] for e in envelopes if e is not None}
    assert len(nonces) == 1_000_000


def test_deterministic_tokens_are_stable_and_key_specific() -> None:
    values = [f"user{i}@example.com" for i in range(100)]
    assert hmac_many(HMAC_KEY, values) == hmac_many(HMAC_KEY, list(values))
    other = hmac_many(os.urandom(32), values)
    assert all(a != b for a, b in zip(hmac_many(HMAC_KEY, values), other, strict=True))
