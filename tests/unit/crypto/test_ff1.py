"""FF1 against NIST SP 800-38G samples; the vectorised path agrees with the step-by-step one."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securepipe.crypto._ff1 import FF1

K128 = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
K192 = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F")
K256 = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94")
TWEAK = "39383736353433323130"
TWEAK36 = "3737373770717273373737"

# NIST "FF1 samples" (csrc.nist.gov examples for SP 800-38G), samples 1 to 9.
SAMPLES = [
    (1, K128, 10, "", "0123456789", "2433477484"),
    (2, K128, 10, TWEAK, "0123456789", "6124200773"),
    (3, K128, 36, TWEAK36, "0123456789abcdefghi", "a9tv40mll9kdu509eum"),
    (4, K192, 10, "", "0123456789", "2830668132"),
    (5, K192, 10, TWEAK, "0123456789", "2496655549"),
    (6, K192, 36, TWEAK36, "0123456789abcdefghi", "xbj3kv35jrawxv32ysr"),
    (7, K256, 10, "", "0123456789", "6657667009"),
    (8, K256, 10, TWEAK, "0123456789", "1001623463"),
    (9, K256, 36, TWEAK36, "0123456789abcdefghi", "xs8a0azh2avyalyzuwd"),
]


def _numerals(text: str) -> list[int]:
    return [int(c, 36) for c in text]


@pytest.mark.parametrize(
    ("sample", "key", "radix", "tweak", "pt", "ct"), SAMPLES, ids=[f"sample{s[0]}" for s in SAMPLES]
)
def test_nist_sample(sample: int, key: bytes, radix: int, tweak: str, pt: str, ct: str) -> None:
    ff1, t = FF1(key, radix), bytes.fromhex(tweak)
    assert ff1.encrypt(_numerals(pt), t) == _numerals(ct)
    assert ff1.decrypt(_numerals(ct), t) == _numerals(pt)
    assert ff1.encrypt_batch([_numerals(pt)], t) == [_numerals(ct)]
    assert ff1.decrypt_batch([_numerals(ct)], t) == [_numerals(pt)]


def test_domain_below_one_million_is_refused() -> None:
    with pytest.raises(ValueError, match="below the domain"):
        FF1(K256, 10).encrypt([1, 2, 3, 4, 5])


@settings(max_examples=60, deadline=None)
@given(
    radix=st.sampled_from([10, 26, 36, 62]),
    data=st.data(),
    tweak=st.binary(max_size=20),
)
def test_vectorised_path_equals_reference(radix: int, data, tweak: bytes) -> None:
    ff1 = FF1(K256, radix)
    minimum = {10: 6, 26: 5, 36: 4, 62: 4}[radix]
    values = data.draw(
        st.lists(
            st.lists(st.integers(0, radix - 1), min_size=minimum, max_size=20),
            min_size=1,
            max_size=8,
        )
    )
    batch = ff1.encrypt_batch(values, tweak)
    assert batch == [ff1.encrypt(v, tweak) for v in values]
    assert ff1.decrypt_batch(batch, tweak) == values


def test_different_keys_give_different_tokens() -> None:
    value = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert FF1(os.urandom(32), 10).encrypt(value) != FF1(os.urandom(32), 10).encrypt(value)
