"""Local KMS and keyring: 0600 master key, wrapped storage, rotation, refusals."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from securepipe.config import KeyConfig, KeyStoreConfig
from securepipe.crypto import keycache
from securepipe.crypto.envelope import decrypt_value, encrypt_value
from securepipe.crypto.keyring import KEYRING_FILE, Keyring
from securepipe.crypto.kms.local import MASTER_KEY_FILE, LocalKms
from securepipe.errors import KeyAccessError

DECLARED = {"pii": KeyConfig(type="aead"), "tok": KeyConfig(type="hmac")}


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    keycache.clear()


def _store(tmp_path: Path) -> KeyStoreConfig:
    return KeyStoreConfig(provider="local", path=str(tmp_path / "secrets"))


def test_master_key_is_created_0600_with_a_warning(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    LocalKms(str(tmp_path / "secrets"), create=True)
    path = tmp_path / "secrets" / MASTER_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "NEW local master key" in caplog.text


def test_missing_master_key_is_not_created_on_executors(tmp_path: Path) -> None:
    with pytest.raises(KeyAccessError, match="does not exist"):
        LocalKms(str(tmp_path / "secrets"))
    assert not (tmp_path / "secrets" / MASTER_KEY_FILE).exists()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_master_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    LocalKms(str(tmp_path / "secrets"), create=True)
    path = tmp_path / "secrets" / MASTER_KEY_FILE
    os.chmod(path, mode)
    with pytest.raises(KeyAccessError, match=r"readable by group or others .*chmod 600"):
        LocalKms(str(tmp_path / "secrets"))


def test_keyring_stores_keys_only_wrapped(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    assert ring.ensure(DECLARED) == ["pii", "tok"]
    clear = keycache.data_keys(ring.handle("pii"))[1]
    text = (tmp_path / "secrets" / KEYRING_FILE).read_text()
    assert base64.b64encode(clear).decode() not in text
    assert clear.hex() not in text
    wrapped = base64.b64decode(json.loads(text)["keys"]["pii"]["versions"]["1"]["wrapped"])
    assert clear not in wrapped


def test_handle_repr_shows_no_key_material(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    assert "wrapped" not in repr(ring.handle("pii"))


def test_keyring_from_another_master_key_is_refused(tmp_path: Path) -> None:
    Keyring(_store(tmp_path), create=True).ensure(DECLARED)
    (tmp_path / "secrets" / MASTER_KEY_FILE).unlink()
    LocalKms(str(tmp_path / "secrets"), create=True)  # a different KEK
    with pytest.raises(KeyAccessError, match="was wrapped by KEK"):
        Keyring(_store(tmp_path))


def test_wrapped_key_swapped_between_names_does_not_unwrap(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    doc = json.loads((tmp_path / "secrets" / KEYRING_FILE).read_text())
    doc["keys"]["pii"]["versions"]["1"] = doc["keys"]["tok"]["versions"]["1"]
    (tmp_path / "secrets" / KEYRING_FILE).write_text(json.dumps(doc))
    with pytest.raises(KeyAccessError, match="cannot unwrap data key"):
        keycache.data_keys(Keyring(_store(tmp_path)).handle("pii"))


def test_rotation_adds_a_version_and_old_versions_still_decrypt(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    v1 = keycache.data_keys(ring.handle("pii"))
    old = encrypt_value(v1[1], 1, "t", "c", "Ada")
    assert ring.rotate("pii") == 2
    keys = keycache.data_keys(Keyring(_store(tmp_path)).handle("pii"))
    assert set(keys) == {1, 2} and keys[1] != keys[2]
    new = encrypt_value(keys[2], 2, "t", "c", "Ada")
    assert decrypt_value(keys, "t", "c", old) == decrypt_value(keys, "t", "c", new) == "Ada"


def test_existing_key_with_another_type_is_refused(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    with pytest.raises(KeyAccessError, match="key 'pii' exists with type 'aead'"):
        ring.ensure({"pii": KeyConfig(type="hmac")})


def test_unknown_key_is_a_key_access_error(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    with pytest.raises(KeyAccessError, match="key 'nope' is not in keyring"):
        ring.handle("nope")
