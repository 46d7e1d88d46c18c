"""HSM (SoftHSM2 via PKCS#11) and AWS KMS (moto_server on 127.0.0.1) behind the keyring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from securepipe.config import AwsKmsConfig, KeyConfig, KeyStoreConfig, Pkcs11Config
from securepipe.crypto import keycache
from securepipe.crypto.envelope import decrypt_value, encrypt_value
from securepipe.crypto.keyring import Keyring, kms_spec
from securepipe.crypto.kms import open_provider
from securepipe.errors import KeyAccessError

DECLARED = {"pii": KeyConfig(type="aead"), "siv": KeyConfig(type="daead")}


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    keycache.clear()


def _hsm_store(tmp_path: Path, hsm: dict[str, str], label: str | None = None) -> KeyStoreConfig:
    label = label or f"kek-{tmp_path.name}"  # one KEK per test in the shared token
    return KeyStoreConfig(
        provider="pkcs11",
        path=str(tmp_path / "keyring"),
        pkcs11=Pkcs11Config(module=hsm["module"], token_label=hsm["token_label"], key_label=label),
    )


def _aws_store(tmp_path: Path, aws: dict[str, str], key_id: str | None = None) -> KeyStoreConfig:
    return KeyStoreConfig(
        provider="aws-kms",
        path=str(tmp_path / "keyring"),
        aws=AwsKmsConfig(
            key_id=key_id or aws["key_id"], region=aws["region"], endpoint_url=aws["endpoint_url"]
        ),
    )


def test_pkcs11_kek_is_generated_non_extractable(tmp_path: Path, softhsm) -> None:
    import pkcs11

    provider = open_provider(kms_spec(_hsm_store(tmp_path, softhsm)), create=True)
    key = provider._key  # type: ignore[attr-defined]
    assert key[pkcs11.Attribute.EXTRACTABLE] is False
    assert key[pkcs11.Attribute.SENSITIVE] is True
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        key[pkcs11.Attribute.VALUE]


def test_pkcs11_wraps_and_unwraps_data_keys(tmp_path: Path, softhsm) -> None:
    ring = Keyring(_hsm_store(tmp_path, softhsm), create=True)
    ring.ensure(DECLARED)
    keys = keycache.data_keys(ring.handle("pii"))
    assert len(keys[1]) == 32
    assert len(keycache.data_keys(ring.handle("siv"))[1]) == 64
    envelope = encrypt_value(keys[1], 1, "t", "c", "Ada")
    keycache.clear()
    again = keycache.data_keys(Keyring(_hsm_store(tmp_path, softhsm)).handle("pii"))
    assert decrypt_value(again, "t", "c", envelope) == "Ada"


def test_pkcs11_refuses_a_wrapped_key_under_another_context(tmp_path: Path, softhsm) -> None:
    provider = open_provider(kms_spec(_hsm_store(tmp_path, softhsm)), create=True)
    wrapped = provider.wrap(b"k" * 32, "securepipe-dek:pii:v1")
    with pytest.raises(KeyAccessError, match="cannot unwrap data key"):
        provider.unwrap(wrapped, "securepipe-dek:pii:v2")


def test_pkcs11_without_pin_is_refused(tmp_path: Path, softhsm, monkeypatch) -> None:
    monkeypatch.delenv("SECUREPIPE_PKCS11_PIN")
    with pytest.raises(KeyAccessError, match="export SECUREPIPE_PKCS11_PIN"):
        open_provider(kms_spec(_hsm_store(tmp_path, softhsm)), create=True)


def test_pkcs11_wrong_pin_is_refused(tmp_path: Path, softhsm) -> None:
    # A fresh process: PKCS#11 login state is per process, and this one is logged in already.
    code = (
        "import sys\n"
        "from securepipe.crypto.kms import KmsSpec, open_provider\n"
        "from securepipe.errors import KeyAccessError\n"
        f"spec = KmsSpec('pkcs11', {softhsm['module']!r}, (('token_label', 'securepipe-test'),"
        " ('key_label', 'k'), ('pin_env', 'SECUREPIPE_PKCS11_PIN')))\n"
        "try:\n    open_provider(spec, create=True)\nexcept KeyAccessError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    env = {**os.environ, "SECUREPIPE_PKCS11_PIN": "not-the-pin"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 3, proc.stderr
    assert "cannot open PKCS#11 token 'securepipe-test'" in proc.stdout
    assert "not-the-pin" not in proc.stdout + proc.stderr


def test_rewrap_from_local_to_hsm_keeps_data_readable(tmp_path: Path, softhsm) -> None:
    local = KeyStoreConfig(provider="local", path=str(tmp_path / "keyring"))
    ring = Keyring(local, create=True)
    ring.ensure(DECLARED)
    envelope = encrypt_value(keycache.data_keys(ring.handle("pii"))[1], 1, "t", "c", "Ada")
    ring.rewrap(_hsm_store(tmp_path, softhsm))
    keycache.clear()
    with pytest.raises(KeyAccessError, match="was wrapped by KEK"):
        Keyring(local)
    moved = keycache.data_keys(Keyring(_hsm_store(tmp_path, softhsm)).handle("pii"))
    assert decrypt_value(moved, "t", "c", envelope) == "Ada"


def test_aws_kms_generates_and_unwraps_data_keys(tmp_path: Path, aws_env) -> None:
    ring = Keyring(_aws_store(tmp_path, aws_env), create=True)
    ring.ensure(DECLARED)
    keys = keycache.data_keys(ring.handle("pii"))
    assert len(keys[1]) == 32
    envelope = encrypt_value(keys[1], 1, "t", "c", "Ada")
    keycache.clear()
    again = keycache.data_keys(Keyring(_aws_store(tmp_path, aws_env)).handle("pii"))
    assert decrypt_value(again, "t", "c", envelope) == "Ada"


def test_aws_kms_refuses_another_encryption_context(tmp_path: Path, aws_env) -> None:
    provider = open_provider(kms_spec(_aws_store(tmp_path, aws_env)))
    wrapped = provider.wrap(b"k" * 32, "securepipe-dek:pii:v1")
    with pytest.raises(
        KeyAccessError, match=r"AWS KMS Decrypt of data key 'securepipe-dek:pii:v9'"
    ):
        provider.unwrap(wrapped, "securepipe-dek:pii:v9")


def test_aws_rewrap_to_a_new_kms_key(tmp_path: Path, aws_env) -> None:
    import boto3

    ring = Keyring(_aws_store(tmp_path, aws_env), create=True)
    ring.ensure(DECLARED)
    envelope = encrypt_value(keycache.data_keys(ring.handle("pii"))[1], 1, "t", "c", "Ada")
    client = boto3.client(
        "kms", region_name=aws_env["region"], endpoint_url=aws_env["endpoint_url"]
    )
    new_key = client.create_key()["KeyMetadata"]["KeyId"]
    ring.rewrap(_aws_store(tmp_path, aws_env, new_key))
    client.schedule_key_deletion(KeyId=aws_env["key_id"], PendingWindowInDays=7)
    keycache.clear()
    moved = keycache.data_keys(Keyring(_aws_store(tmp_path, aws_env, new_key)).handle("pii"))
    assert decrypt_value(moved, "t", "c", envelope) == "Ada"
