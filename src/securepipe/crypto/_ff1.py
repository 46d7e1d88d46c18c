"""FF1 format-preserving encryption (NIST SP 800-38G, Rev. 1), private to securepipe.crypto.

Two implementations of the same algorithm:

* `FF1.encrypt` / `FF1.decrypt`: the specification step by step on Python integers, for any radix
  and length; checked against NIST's published samples.
* `FF1.encrypt_batch` / `FF1.decrypt_batch`: many values of one length at a time. When
  ``radix ** ceil(n/2) <= 2**32`` (up to 18 decimal digits: SSNs, card and phone numbers) the
  ten Feistel rounds run on numpy arrays and each round is one AES-ECB call over the whole batch:
  the CBC-MAC of ``P || Q`` only varies in Q's last block, so the constant prefix is chained once.
  Other lengths fall back to the step-by-step path. Tests check both agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["FF1", "MIN_DOMAIN"]

MIN_DOMAIN = 1_000_000  # SP 800-38G Rev. 1: radix ** minlen >= 1,000,000
_ROUNDS = 10


def _ceil_log2_pow(radix: int, v: int) -> int:
    """ceil(v * log2(radix)), exactly."""
    return (radix**v - 1).bit_length()


class FF1:
    """FF1 with AES under `key` (16, 24 or 32 bytes) over numerals `0 .. radix-1`."""

    def __init__(self, key: bytes, radix: int) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError("FF1 key must be 16, 24 or 32 bytes")
        if not 2 <= radix <= 65536:
            raise ValueError("FF1 radix must be between 2 and 65536")
        self._ecb = Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305 - one block at a time
        self.radix = radix

    def _aes(self, data: bytes) -> bytes:
        enc = self._ecb.encryptor()
        return enc.update(data) + enc.finalize()

    def _prf(self, data: bytes) -> bytes:
        state = bytes(16)
        for i in range(0, len(data), 16):
            block = bytes(a ^ b for a, b in zip(state, data[i : i + 16], strict=True))
            state = self._aes(block)
        return state

    def _params(self, n: int, tweak: bytes) -> tuple[int, int, int, int, bytes]:
        if n < 2 or self.radix**n < MIN_DOMAIN:
            raise ValueError(f"FF1 input of {n} numerals in radix {self.radix} is below the domain")
        u = n // 2
        v = n - u
        b = (_ceil_log2_pow(self.radix, v) + 7) // 8
        d = 4 * ((b + 3) // 4) + 4
        p = (
            bytes([1, 2, 1])
            + self.radix.to_bytes(3, "big")
            + bytes([10, u % 256])
            + n.to_bytes(4, "big")
            + len(tweak).to_bytes(4, "big")
        )
        return u, v, b, d, p

    def _round_y(self, p: bytes, tweak: bytes, i: int, num: int, b: int, d: int) -> int:
        pad = (-len(tweak) - b - 1) % 16
        q = tweak + bytes(pad) + bytes([i]) + num.to_bytes(b, "big")
        r = self._prf(p + q)
        s = r
        j = 1
        while len(s) < d:
            s += self._aes(bytes(x ^ y for x, y in zip(r, j.to_bytes(16, "big"), strict=True)))
            j += 1
        return int.from_bytes(s[:d], "big")

    @staticmethod
    def _num(numerals: Sequence[int], radix: int) -> int:
        value = 0
        for x in numerals:
            value = value * radix + x
        return value

    @staticmethod
    def _str(value: int, radix: int, m: int) -> list[int]:
        out = [0] * m
        for k in range(m - 1, -1, -1):
            value, out[k] = divmod(value, radix)
        return out

    def encrypt(self, numerals: Sequence[int], tweak: bytes = b"") -> list[int]:
        """Encrypt a numeral string (step by step, any length)."""
        n = len(numerals)
        u, v, b, d, p = self._params(n, tweak)
        a, bb = list(numerals[:u]), list(numerals[u:])
        for i in range(_ROUNDS):
            m = u if i % 2 == 0 else v
            y = self._round_y(p, tweak, i, self._num(bb, self.radix), b, d)
            c = (self._num(a, self.radix) + y) % self.radix**m
            a, bb = bb, self._str(c, self.radix, m)
        return a + bb

    def decrypt(self, numerals: Sequence[int], tweak: bytes = b"") -> list[int]:
        """Decrypt a numeral string (step by step, any length)."""
        n = len(numerals)
        u, v, b, d, p = self._params(n, tweak)
        a, bb = list(numerals[:u]), list(numerals[u:])
        for i in range(_ROUNDS - 1, -1, -1):
            m = u if i % 2 == 0 else v
            y = self._round_y(p, tweak, i, self._num(a, self.radix), b, d)
            c = (self._num(bb, self.radix) - y) % self.radix**m
            bb, a = a, self._str(c, self.radix, m)
        return a + bb

    # -- batched, vectorised path -------------------------------------------------------------

    def _fast_ok(self, n: int) -> bool:
        return self.radix ** (n - n // 2) <= 2**32 and self.radix**n < 2**63

    def _batch(self, values: np.ndarray, n: int, tweak: bytes, decrypt: bool) -> np.ndarray:
        """`values`: uint64 array of NUM_radix(X) for numeral strings of length `n`."""
        u, v, b, d, p = self._params(n, tweak)
        mod_u, mod_v = np.uint64(self.radix**u), np.uint64(self.radix**v)
        a = values // mod_v  # first u numerals
        bb = values % mod_v  # last v numerals
        pad = (-len(tweak) - b - 1) % 16
        q_const = tweak + bytes(pad)  # Q without its round byte and NUM(B)
        # Everything before Q's last block is constant: chain the CBC-MAC over it once.
        whole = p + q_const
        last_start = len(whole) + b + 1 - 16
        state = self._prf(whole[:last_start])
        fixed = np.frombuffer(whole[last_start:], dtype=np.uint8)
        count = len(values)
        block = np.zeros((count, 16), dtype=np.uint8)
        block[:, : len(fixed)] = fixed
        block ^= np.frombuffer(state, dtype=np.uint8)
        state_at_i = state[len(fixed)]
        rounds = range(_ROUNDS - 1, -1, -1) if decrypt else range(_ROUNDS)
        for i in rounds:
            m_mod = mod_u if i % 2 == 0 else mod_v
            src = a if decrypt else bb
            block[:, len(fixed)] = i ^ state_at_i
            num = src.astype(">u8").view(np.uint8).reshape(count, 8)[:, 8 - b :]
            block[:, len(fixed) + 1 :] = num ^ np.frombuffer(state[16 - b :], dtype=np.uint8)
            r = np.frombuffer(self._aes(block.tobytes()), dtype=np.uint8).reshape(count, 16)
            y = r[:, :d].copy().view(">u8").reshape(count).astype(np.uint64) % m_mod
            if decrypt:
                c = (bb + m_mod - y) % m_mod
                bb, a = a, c
            else:
                c = (a + y) % m_mod
                a, bb = bb, c
        return a * mod_v + bb

    def encrypt_batch(self, batch: Sequence[Sequence[int]], tweak: bytes = b"") -> list[list[int]]:
        """Encrypt many numeral strings (vectorised per length where the domain allows)."""
        return self._run_batch(batch, tweak, decrypt=False)

    def decrypt_batch(self, batch: Sequence[Sequence[int]], tweak: bytes = b"") -> list[list[int]]:
        """Decrypt many numeral strings (vectorised per length where the domain allows)."""
        return self._run_batch(batch, tweak, decrypt=True)

    def _run_batch(
        self, batch: Sequence[Sequence[int]], tweak: bytes, decrypt: bool
    ) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in batch]
        by_length: dict[int, list[int]] = {}
        for idx, numerals in enumerate(batch):
            by_length.setdefault(len(numerals), []).append(idx)
        for n, idxs in by_length.items():
            if self._fast_ok(n):
                nums = np.array([self._num(batch[i], self.radix) for i in idxs], dtype=np.uint64)
                res = self._batch(nums, n, tweak, decrypt)
                for i, value in zip(idxs, res.tolist(), strict=True):
                    out[i] = self._str(int(value), self.radix, n)
            else:
                fn = self.decrypt if decrypt else self.encrypt
                for i in idxs:
                    out[i] = fn(batch[i], tweak)
        return out
