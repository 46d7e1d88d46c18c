"""Local KMS and keyring: 0600 master key, wrapped storage, rotation, refusals."""

from __future__ import annotations

import base64
import dataclasses
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


def test_master_key_is_created_0600_with_a_warning(tmp_path: Path, caplog) -> None:
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


def _edit(tmp_path: Path, change) -> None:
    path = tmp_path / "secrets" / KEYRING_FILE
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_wrapped_key_swapped_between_names_is_refused_twice(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    tok = ring.handle("tok")

    def swap(doc):
        doc["keys"]["pii"]["versions"]["1"] = doc["keys"]["tok"]["versions"]["1"]

    _edit(tmp_path, swap)
    with pytest.raises(KeyAccessError, match="modified outside securepipe"):
        Keyring(_store(tmp_path))
    # Behind the seal, each wrap is bound to its key's name and version.
    swapped = dataclasses.replace(ring.handle("pii"), wrapped=tok.wrapped)
    with pytest.raises(KeyAccessError, match="cannot unwrap data key"):
        keycache.data_keys(swapped)


def test_rolled_back_current_version_is_refused(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    ring.rotate("pii")
    _edit(tmp_path, lambda doc: doc["keys"]["pii"].__setitem__("current", 1))
    with pytest.raises(KeyAccessError, match="integrity check failed"):
        Keyring(_store(tmp_path))


def test_destroyed_version_put_back_is_refused(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    before = json.loads((tmp_path / "secrets" / KEYRING_FILE).read_text())
    ring.rotate("pii")
    ring.destroy("pii", 1)
    assert (
        "1"
        not in json.loads((tmp_path / "secrets" / KEYRING_FILE).read_text())["keys"]["pii"][
            "versions"
        ]
    )
    _edit(
        tmp_path,
        lambda doc: doc["keys"]["pii"]["versions"].__setitem__(
            "1", before["keys"]["pii"]["versions"]["1"]
        ),
    )
    with pytest.raises(KeyAccessError, match="integrity check failed"):
        Keyring(_store(tmp_path))


def test_unsealed_keyring_is_refused_until_sealed_on_purpose(tmp_path: Path) -> None:
    Keyring(_store(tmp_path), create=True).ensure(DECLARED)
    _edit(tmp_path, lambda doc: doc.pop("mac"))
    with pytest.raises(KeyAccessError, match=r"no integrity seal.*securepipe keys seal"):
        Keyring(_store(tmp_path))
    Keyring(_store(tmp_path), allow_unsealed=True).seal()
    assert Keyring(_store(tmp_path)).names() == ["pii", "tok"]


def test_every_change_raises_the_generation(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    first = Keyring(_store(tmp_path)).generation
    ring.rotate("pii")
    assert Keyring(_store(tmp_path)).generation == first + 1
    assert ring.handle("pii").generation == first + 1


@pytest.mark.parametrize("key_type", ["hmac", "fpe"])
def test_keys_without_versioned_outputs_refuse_rotation_and_say_how_to_migrate(
    tmp_path: Path, key_type: str
) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure({"k": KeyConfig(type=key_type)})  # type: ignore[arg-type]
    with pytest.raises(KeyAccessError, match=r"key 'k' .*cannot be rotated.*declare one under"):
        ring.rotate("k")
    assert Keyring(_store(tmp_path)).handle("k").current == 1


def _add_keys(folder: str, prefix: str, count: int) -> None:
    store = KeyStoreConfig(provider="local", path=folder)
    for i in range(count):
        Keyring(store).ensure({f"{prefix}{i}": KeyConfig(type="aead")})


def test_two_processes_adding_keys_keep_every_key(tmp_path: Path) -> None:
    import multiprocessing

    Keyring(_store(tmp_path), create=True).ensure(DECLARED)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_keys, args=(str(tmp_path / "secrets"), p, 15)) for p in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    names = set(Keyring(_store(tmp_path)).names())
    assert {f"{p}{i}" for p in "ab" for i in range(15)} <= names


def test_destroy_names_the_retired_copies_that_still_hold_the_version(tmp_path: Path) -> None:
    from securepipe.crypto.keyring import rotate_local_master_key

    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    ring.rotate("pii")
    rotate_local_master_key(_store(tmp_path))
    survivors = Keyring(_store(tmp_path)).destroy("pii", 1)
    assert [p.name.split("-")[0] for p in survivors] == [f"{KEYRING_FILE}.retired"]
    assert 1 not in Keyring(_store(tmp_path)).handle("pii").wrapped


def test_encryption_counts_accumulate_per_version(tmp_path: Path) -> None:
    ring = Keyring(_store(tmp_path), create=True)
    ring.ensure(DECLARED)
    assert ring.record_encryptions({"pii:v1": 5}) == {"pii:v1": 5}
    assert Keyring(_store(tmp_path)).record_encryptions({"pii:v1": 7}) == {"pii:v1": 12}


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


def test_a_missing_keyring_is_never_regenerated_outside_keys_init(tmp_path: Path) -> None:
    store = _store(tmp_path)
    Keyring(store, create=True).ensure(DECLARED)
    (tmp_path / "secrets" / KEYRING_FILE).unlink()
    # The master key is there; the keyring is not: every command but `keys init` refuses.
    with pytest.raises(KeyAccessError, match=r"does not exist: data keys are created only by"):
        Keyring(store)
    assert not (tmp_path / "secrets" / KEYRING_FILE).exists()
    # `keys init` (create=True) writes a new, empty, sealed keyring at once.
    Keyring(store, create=True)
    assert Keyring(store).names() == [] and Keyring(store).generation == 1
