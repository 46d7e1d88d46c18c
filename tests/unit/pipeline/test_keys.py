"""The AES-GCM encryption budget: totals per key version, a warning past the limit."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from securepipe.crypto.keyring import Keyring
from securepipe.pipeline import TableResult, TableStatus, keys
from securepipe.pipeline.nightly import kept_encryptions
from tests.builders import make_config


def _published(count: int) -> TableResult:
    return TableResult(
        table="customers",
        status=TableStatus.PUBLISHED,
        rows_read=count,
        rows_published=count,
        rows_quarantined=0,
        table_path="t",
        table_version=1,
        quarantine_path="q",
        quarantine_version=1,
        encryptions={"quarantine:v1": count},
    )


def test_a_key_version_past_the_budget_is_named_in_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(tmp_path)
    Keyring(cfg.keystore, create=True).ensure(cfg.keys)
    monkeypatch.setattr(keys, "ENCRYPTION_BUDGET", 10)
    with caplog.at_level(logging.WARNING, logger="securepipe.pipeline"):
        keys.count_encryptions(cfg, kept_encryptions([_published(6)]))
        assert "rotate" not in caplog.text
        keys.count_encryptions(cfg, kept_encryptions([_published(6)]))  # 12 in total
    assert "key quarantine:v1 has sealed 12 values with random nonces (budget 10)" in caplog.text
    assert "securepipe keys rotate quarantine" in caplog.text
    # A refused (gate failed) table sealed nothing that was kept: it does not count.
    failed = _published(100)
    failed.status = TableStatus.GATE_FAILED
    assert kept_encryptions([failed, _published(1)]) == {"quarantine:v1": 1}
    keys.count_encryptions(cfg, kept_encryptions([failed]))
    assert Keyring(cfg.keystore).record_encryptions({}) == {}
    described = {k["name"]: k for k in Keyring(cfg.keystore).describe()}
    assert described["quarantine"]["encryptions"] == {"1": 12}


def test_resolving_keys_never_creates_a_master_key(tmp_path: Path) -> None:
    """A key store path that resolves somewhere new stops the job; only `keys init` (or the
    demo) creates a master key, so no second key hierarchy appears unnoticed."""
    from securepipe.errors import KeyAccessError

    cfg = make_config(tmp_path)
    master = Path(cfg.keystore.path) / "master.key"
    master.unlink()  # make_config provisions one, as `keys init` does
    (Path(cfg.keystore.path) / "keyring.json").unlink()
    with pytest.raises(KeyAccessError, match=f"master key file {master} does not exist"):
        keys.resolve_keys(cfg, ["customers"])
    assert not master.exists()
    assert not (Path(cfg.keystore.path) / "keyring.json").exists()
