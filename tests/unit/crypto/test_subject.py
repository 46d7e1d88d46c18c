"""Per-subject keys: wraps that name their KEK version, re-wrap on rotation, per-subject FF1."""

from __future__ import annotations

import os

import pytest

from securepipe.crypto import subject as s
from securepipe.errors import DecryptionError
from securepipe.protect.operators import fpe_tweak

KEKS = {1: os.urandom(32), 2: os.urandom(32)}
HASH = "h" * 43


def _legacy_wrap(kek: bytes, hashed: str, key: bytes) -> bytes:
    # The format written before wraps carried their KEK version (nonce | key | tag).
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, key, f"securepipe-subject-key:{hashed}".encode())


def test_a_wrap_names_its_kek_version_and_opens_after_a_rotation() -> None:
    wrapped = s.new_wrapped_subject_key(KEKS[1], 1, HASH)
    assert s.wrapped_kek_version(wrapped) == 1
    [env] = s.subject_encrypt_many({1: KEKS[1]}, "t", "c", ["Ada"], [HASH], [wrapped])
    # After `keys rotate subject_kek` the handle holds both versions; v1 wraps still open.
    assert s.subject_decrypt_many(KEKS, "t", "c", [env], [HASH], [wrapped]) == ["Ada"]


def test_keys_drawn_in_one_read_are_distinct_bound_to_their_subject_and_version() -> None:
    hashes = [f"{i:043d}" for i in range(50)]
    wraps = s.new_wrapped_subject_keys(KEKS[2], 2, hashes)
    assert len(set(wraps)) == 50 and {s.wrapped_kek_version(w) for w in wraps} == {2}
    assert len(wraps[0]) == len(s.new_wrapped_subject_key(KEKS[2], 2, HASH))  # one format
    envs = s.subject_encrypt_many(KEKS, "t", "c", ["Ada"] * 50, hashes, wraps)
    assert s.subject_decrypt_many(KEKS, "t", "c", envs, hashes, wraps) == ["Ada"] * 50
    # Neither keys nor nonces repeat between wraps (one random read sliced, not reused).
    nonces = {w[5:17] for w in wraps}
    assert len(nonces) == 50
    keys = {s.rewrap_subject_key(KEKS, 1, h, w) for h, w in zip(hashes, wraps, strict=True)}
    assert len(keys) == 50
    with pytest.raises(DecryptionError):  # bound to its subject
        s.subject_encrypt_many(KEKS, "t", "c", ["Eve"], [hashes[1]], [wraps[0]])
    with pytest.raises(DecryptionError):  # and to its KEK version
        s.subject_encrypt_many({2: KEKS[1]}, "t", "c", ["Eve"], [hashes[0]], [wraps[0]])


def test_rewrap_moves_a_subject_key_to_the_new_version_without_changing_it() -> None:
    old = s.new_wrapped_subject_key(KEKS[1], 1, HASH)
    [env] = s.subject_encrypt_many(KEKS, "t", "c", ["Ada"], [HASH], [old])
    new = s.rewrap_subject_key(KEKS, 2, HASH, old)
    assert s.wrapped_kek_version(new) == 2 and new != old
    assert s.subject_decrypt_many({2: KEKS[2]}, "t", "c", [env], [HASH], [new]) == ["Ada"]
    assert s.rewrap_subject_key(KEKS, 2, HASH, new) == new  # idempotent


def test_legacy_wraps_open_and_are_rewrapped() -> None:
    key = os.urandom(32)
    legacy = _legacy_wrap(KEKS[1], HASH, key)
    assert s.wrapped_kek_version(legacy) == 1
    [env] = s.subject_encrypt_many(KEKS, "t", "c", ["Ada"], [HASH], [legacy])
    new = s.rewrap_subject_key(KEKS, 2, HASH, legacy)
    assert s.subject_decrypt_many(KEKS, "t", "c", [env], [HASH], [new]) == ["Ada"]


def test_destroyed_kek_version_or_a_wrap_relabelled_to_another_version_fails() -> None:
    wrapped = s.new_wrapped_subject_key(KEKS[1], 1, HASH)
    [env] = s.subject_encrypt_many(KEKS, "t", "c", ["Ada"], [HASH], [wrapped])
    with pytest.raises(DecryptionError):
        s.subject_decrypt_many({2: KEKS[2]}, "t", "c", [env], [HASH], [wrapped])
    relabelled = wrapped[:1] + (2).to_bytes(4, "big") + wrapped[5:]
    with pytest.raises(DecryptionError):
        s.subject_decrypt_many(KEKS, "t", "c", [env], [HASH], [relabelled])


def test_a_wrap_moved_to_another_subject_fails() -> None:
    wrapped = s.new_wrapped_subject_key(KEKS[1], 1, HASH)
    with pytest.raises(DecryptionError):
        s.subject_encrypt_many(KEKS, "t", "c", ["Ada"], ["x" * 43], [wrapped])


def test_a_wrap_moved_to_another_subject_fails_after_its_own_subject_used_it() -> None:
    # The process cache held the unwrapped key under the wrap alone: a second row with another
    # subject's hash and the same wrap was served from the cache without its binding check.
    wrapped = s.new_wrapped_subject_key(KEKS[1], 1, HASH)
    s.subject_encrypt_many(KEKS, "t", "c", ["Ada"], [HASH], [wrapped])
    with pytest.raises(DecryptionError):
        s.subject_encrypt_many(KEKS, "t", "c", ["Eve"], ["y" * 43], [wrapped])


def test_fpe_subject_keeps_the_format_reverses_and_differs_per_subject() -> None:
    a = s.new_wrapped_subject_key(KEKS[1], 1, "a" * 43)
    b = s.new_wrapped_subject_key(KEKS[1], 1, "b" * 43)
    values = ["123-45-6789", "123-45-6789", None]
    hashes = ["a" * 43, "b" * 43, "a" * 43]
    tokens = s.subject_fpe_many(KEKS, "0123456789", b"t.ssn", values, hashes, [a, b, a])
    assert tokens[2] is None and tokens[0] != tokens[1]
    assert all(t is not None and len(t) == 11 and t[3] == "-" for t in tokens[:2])
    back = s.subject_fpe_many(KEKS, "0123456789", b"t.ssn", tokens, hashes, [a, b, a], decrypt=True)
    assert back == values
    # Erased subject: no key, nothing to reveal.
    gone = s.subject_fpe_many(
        KEKS, "0123456789", b"t.ssn", tokens, hashes, [None, b, a], decrypt=True
    )
    assert gone[0] is None and gone[1] == "123-45-6789"
    with pytest.raises(DecryptionError):
        s.subject_fpe_many(KEKS, "0123456789", b"t.ssn", ["123-45-6789"], ["a" * 43], [None])


def test_fpe_tweak_defaults_to_the_column_and_an_empty_one_is_explicit() -> None:
    from securepipe.crypto.tokens import fpe_tokenize_many

    assert fpe_tweak("customers", "ssn", {}) == b"customers.ssn"
    assert fpe_tweak("customers", "ssn", {"tweak": ""}) == b""
    key = os.urandom(32)
    ssn = ["123-45-6789"]
    # Two columns sharing an fpe key no longer give equal tokens for equal values.
    assert fpe_tokenize_many(key, "0123456789", fpe_tweak("a", "ssn", {}), ssn) != (
        fpe_tokenize_many(key, "0123456789", fpe_tweak("b", "tax_id", {}), ssn)
    )


def test_tampered_or_moved_per_subject_values_are_refused_and_erased_ones_read_as_null() -> None:
    """The shared per-row loop (`_per_subject`) keeps each operator's refusals."""
    wrapped = s.new_wrapped_subject_key(KEKS[1], 1, HASH)
    [envelope] = s.subject_encrypt_many(KEKS, "t", "c", ["Ada"], [HASH], [wrapped])
    [token] = s.subject_tokenize_many(KEKS, ["Ada"], [HASH], [wrapped])
    assert envelope is not None and token is not None
    assert s.subject_decrypt_many(KEKS, "t", "c", [envelope], [HASH], [wrapped]) == ["Ada"]
    assert s.subject_detokenize_many(KEKS, [token], [HASH], [wrapped]) == ["Ada"]
    flipped = envelope[:-1] + bytes([envelope[-1] ^ 1])
    with pytest.raises(DecryptionError):  # a tampered envelope
        s.subject_decrypt_many(KEKS, "t", "c", [flipped], [HASH], [wrapped])
    with pytest.raises(DecryptionError):  # an envelope copied into another column
        s.subject_decrypt_many(KEKS, "t", "other", [envelope], [HASH], [wrapped])
    other = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(DecryptionError):  # a tampered token
        s.subject_detokenize_many(KEKS, [other], [HASH], [wrapped])
    with pytest.raises(DecryptionError):  # protecting a value whose subject has no key
        s.subject_tokenize_many(KEKS, ["Ada"], [HASH], [None])
    # Erased subject (no wrapped key): revealing gives null, never an error or the value.
    assert s.subject_decrypt_many(KEKS, "t", "c", [envelope], [HASH], [None]) == [None]
    assert s.subject_detokenize_many(KEKS, [token], [HASH], [None]) == [None]
