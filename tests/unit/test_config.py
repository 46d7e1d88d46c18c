"""Configuration validation: every refusal names the file, the table and the column."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from securepipe.config import load_config
from securepipe.errors import ConfigError
from tests.builders import CONF, load_cfg


def _write(tmp_path: Path, mutate) -> Path:
    doc = yaml.safe_load(CONF.read_text())
    mutate(doc)
    shutil.copytree(CONF.parent / "gates", tmp_path / "gates", dirs_exist_ok=True)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _column_key(d, column: str, protect: dict) -> None:
    """Protect a customers column under a column key (a table with partial erasure)."""
    d["keys"].update(customer_pii={"type": "aead"}, contact_token={"type": "hmac"})
    d["tables"]["customers"].update(erasure="partial", erasure_reason="test")
    d["tables"]["customers"]["columns"][column]["protect"] = protect


def test_shipped_config_loads_and_hash_is_stable() -> None:
    first, second = load_cfg(CONF), load_cfg(CONF)
    assert set(first.tables) == {"customers", "transactions"}
    assert first.fingerprint() == second.fingerprint()
    assert len(first.fingerprint()) == 64


def test_config_hash_changes_with_a_protection() -> None:
    base = load_cfg(CONF)
    other = load_cfg(
        CONF, keys={**{k: v.model_dump() for k, v in base.keys.items()}, "extra": {"type": "aead"}}
    )
    assert base.fingerprint() != other.fingerprint()


def test_unclassified_column_names_file_table_and_column(tmp_path: Path) -> None:
    path = _write(
        tmp_path, lambda d: d["tables"]["customers"]["columns"]["email"].pop("classification")
    )
    with pytest.raises(ConfigError) as err:
        load_cfg(path)
    assert str(err.value) == (
        f"{path}: table 'customers', column 'email', key 'classification': Field required"
    )


def test_unknown_key_name_is_refused(tmp_path: Path) -> None:
    def mutate(d):
        _column_key(d, "date_of_birth", {"op": "encrypt", "key": "no_such_key"})

    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_cfg(path)
    assert str(err.value) == (
        f"{path}: table 'customers', column 'date_of_birth': unknown key 'no_such_key' "
        "(declare it under keys:)"
    )


def test_key_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    def mutate(d):
        _column_key(d, "date_of_birth", {"op": "encrypt", "key": "contact_token"})

    with pytest.raises(
        ConfigError, match=r"column 'date_of_birth': key 'contact_token' has type 'hmac'"
    ):
        load_cfg(_write(tmp_path, mutate))


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("version: 1\ntables:\n  customers: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_cfg(path)
    assert str(err.value).startswith(f"{path}: invalid YAML at line ")


def test_wrong_type_names_the_column(tmp_path: Path) -> None:
    def mutate(d):
        d["tables"]["transactions"]["columns"]["amount"]["type"] = "money"

    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_cfg(path)
    assert str(err.value).startswith(
        f"{path}: table 'transactions', column 'amount', key 'type': unsupported type 'money'"
    )


def test_wrong_value_type_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["spark"].__setitem__("shuffle_partitions", "many"))
    with pytest.raises(
        ConfigError, match=r"key 'spark.shuffle_partitions': Input should be a valid integer"
    ):
        load_cfg(path)


def test_personal_data_cannot_be_kept_in_clear(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        lambda d: d["tables"]["customers"]["columns"]["ssn"].__setitem__("protect", {"op": "keep"}),
    )
    with pytest.raises(
        ConfigError,
        match=r"table 'customers', column 'ssn': classification 'pii' cannot be published in clear",
    ):
        load_cfg(path)


def test_unknown_operator_lists_the_known_ones(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        lambda d: d["tables"]["customers"]["columns"]["ssn"].__setitem__(
            "protect", {"op": "scramble"}
        ),
    )
    with pytest.raises(
        ConfigError, match=r"column 'ssn': unknown protection op 'scramble' \(known: .*encrypt"
    ):
        load_cfg(path)


def test_operator_refuses_unknown_parameter(tmp_path: Path) -> None:
    def mutate(d):
        _column_key(d, "date_of_birth", {"op": "encrypt", "key": "customer_pii", "mode": "ECB"})

    with pytest.raises(
        ConfigError,
        match=r"column 'date_of_birth': operator 'encrypt' has no parameter\(s\) \['mode'\]",
    ):
        load_cfg(_write(tmp_path, mutate))


@pytest.mark.parametrize(
    ("column", "protect"),
    [
        ("date_of_birth", {"op": "encrypt", "key": "customer_pii"}),
        ("email", {"op": "tokenize", "kind": "hmac", "key": "contact_token"}),
        ("ssn", {"op": "fpe", "alphabet": "digits", "key": "ssn_fpe"}),
        ("ssn", {"op": "partial", "show_last": 4}),
    ],
)
def test_personal_data_outliving_an_erasure_is_refused_in_a_subject_table(
    tmp_path: Path, column: str, protect: dict[str, object]
) -> None:
    def mutate(d):
        d["keys"].update(
            customer_pii={"type": "aead"}, contact_token={"type": "hmac"}, ssn_fpe={"type": "fpe"}
        )
        d["tables"]["customers"]["columns"][column]["protect"] = protect

    with pytest.raises(
        ConfigError,
        match=rf"column '{column}': pii data of a subject table under op '{protect['op']}' "
        r"outlives an erasure .*fpe_subject.*erasure: partial",
    ):
        load_cfg(_write(tmp_path, mutate))


def test_partial_erasure_needs_a_reason_and_then_allows_column_keys(tmp_path: Path) -> None:
    def mutate(d):
        _column_key(d, "date_of_birth", {"op": "encrypt", "key": "customer_pii"})
        d["tables"]["customers"]["erasure_reason"] = "  "

    with pytest.raises(ConfigError, match=r"table 'customers': erasure: partial needs an"):
        load_cfg(_write(tmp_path, mutate))

    def with_reason(d):
        _column_key(d, "date_of_birth", {"op": "encrypt", "key": "customer_pii"})

    cfg = load_cfg(_write(tmp_path, with_reason))
    assert cfg.tables["customers"].erasure == "partial"


def test_per_subject_columns_and_drops_satisfy_complete_erasure(tmp_path: Path) -> None:
    def mutate(d):
        cols = d["tables"]["customers"]["columns"]
        cols["ssn"]["protect"] = {"op": "fpe_subject", "alphabet": "digits"}
        cols["street_address"]["protect"] = {"op": "drop"}
        cols["phone"]["protect"] = {"op": "redact"}

    assert load_cfg(_write(tmp_path, mutate)).tables["customers"].erasure == "complete"


def test_fpe_subject_checks_its_alphabet_like_fpe(tmp_path: Path) -> None:
    def mutate(d):
        d["tables"]["customers"]["columns"]["ssn"]["protect"] = {
            "op": "fpe_subject",
            "alphabet": "klingon",
        }

    with pytest.raises(ConfigError, match=r"column 'ssn': unknown fpe alphabet 'klingon'"):
        load_cfg(_write(tmp_path, mutate))


def test_key_column_must_be_declared(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["tables"]["customers"].__setitem__("key", "nope"))
    with pytest.raises(ConfigError, match=r"table 'customers': key column 'nope' is not declared"):
        load_cfg(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read configuration"):
        load_cfg(tmp_path / "absent.yaml")


def test_spark_secret_comes_from_the_environment_or_a_file(tmp_path, monkeypatch) -> None:
    from pyspark.sql import SparkSession

    from securepipe.config import SparkSettings
    from securepipe.errors import ConfigError
    from securepipe.spark import configure_builder

    settings = SparkSettings(jars="provided")
    monkeypatch.delenv("SECUREPIPE_SPARK_AUTH_SECRET", raising=False)
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr3t-value\n")
    monkeypatch.setenv("SECUREPIPE_SPARK_AUTH_SECRET_FILE", str(secret_file))
    options = configure_builder(SparkSession.Builder(), settings)._options
    assert options["spark.authenticate"] == "true"
    assert options["spark.authenticate.secret"] == "s3cr3t-value"

    secret_file.write_text("\n")
    with pytest.raises(ConfigError, match=r"SECUREPIPE_SPARK_AUTH_SECRET_FILE=.*empty"):
        configure_builder(SparkSession.Builder(), settings)
    monkeypatch.delenv("SECUREPIPE_SPARK_AUTH_SECRET_FILE")
    local = configure_builder(SparkSession.Builder(), settings)._options
    # Local mode: authenticated and encrypted with a secret Spark generates per application.
    assert local["spark.authenticate"] == "true"
    assert local["spark.network.crypto.enabled"] == "true"
    assert "spark.authenticate.secret" not in local
    cluster = SparkSettings(jars="provided", master="spark://127.0.0.1:7077")
    assert "spark.authenticate" not in configure_builder(SparkSession.Builder(), cluster)._options


def test_a_submitters_settings_win_but_cannot_turn_hardening_off(monkeypatch) -> None:
    """Under spark-submit, `--conf` / `--name` / spark-defaults beat securepipe's defaults and the
    file's `spark.conf`; turning off a hardened setting is refused unless allowed."""
    from pyspark.sql import SparkSession

    import securepipe.spark as sp
    from securepipe.config import SparkSettings
    from securepipe.errors import ConfigError

    monkeypatch.delenv("SECUREPIPE_SPARK_AUTH_SECRET", raising=False)
    monkeypatch.delenv("SECUREPIPE_SPARK_AUTH_SECRET_FILE", raising=False)
    given = {
        "spark.sql.shuffle.partitions": "7",
        "spark.eventLog.enabled": "true",
        "spark.app.name": "platform-nightly",
        "spark.sql.catalog.spark_catalog": "org.example.Catalog",
        "spark.redaction.regex": "(?i)internal",
        "spark.io.encryption.enabled": "true",
    }
    monkeypatch.setattr(sp, "submitted_conf", lambda: dict(given))
    settings = SparkSettings(jars="provided", conf={"spark.eventLog.enabled": "false"})
    options = sp.configure_builder(SparkSession.Builder(), settings)._options
    for key in ("spark.sql.shuffle.partitions", "spark.eventLog.enabled", "spark.app.name"):
        assert key not in options, key  # the submitter's value stands (also over spark.conf)
    assert "spark.sql.catalog.spark_catalog" not in options
    assert options["spark.redaction.regex"] == f"(?i)internal|{sp.REDACTION_REGEX}"
    assert options["spark.sql.session.timeZone"] == "UTC"  # what the submitter left unset

    given["spark.io.encryption.enabled"] = "false"
    with pytest.raises(
        ConfigError, match=r"sets spark\.io\.encryption\.enabled=false.*allow_insecure"
    ):
        sp.configure_builder(SparkSession.Builder(), settings)
    allowed = SparkSettings(jars="provided", allow_insecure=["spark.io.encryption.enabled"])
    options = sp.configure_builder(SparkSession.Builder(), allowed)._options
    assert "spark.io.encryption.enabled" not in options
    given["spark.network.crypto.enabled"] = "FALSE"
    with pytest.raises(ConfigError, match=r"spark\.network\.crypto\.enabled=false"):
        sp.configure_builder(SparkSession.Builder(), allowed)
    with pytest.raises(ValueError, match="allow_insecure"):
        SparkSettings(allow_insecure=["spark.ui.enabled"])  # type: ignore[list-item]
    # The configuration file's own spark.conf follows the same rule as the submission.
    given.clear()
    own = SparkSettings(jars="provided", conf={"spark.io.encryption.enabled": "false"})
    with pytest.raises(ConfigError, match=r"spark\.conf in the configuration sets spark\.io"):
        sp.configure_builder(SparkSession.Builder(), own)
    own = own.model_copy(update={"allow_insecure": ["spark.io.encryption.enabled"]})
    options = sp.configure_builder(SparkSession.Builder(), own)._options
    assert options["spark.io.encryption.enabled"] == "false"
    # The UI is off unless asked for, and never offers to kill a night's stages.
    assert options["spark.ui.enabled"] == "false" and options["spark.ui.killEnabled"] == "false"


def test_load_config_checks_types_only_and_the_load_step_checks_operators(tmp_path: Path) -> None:
    """`load_config` is the ground floor (no registry): an unknown operator passes it, and the
    one load step every entry point uses refuses it before Spark starts."""

    def mutate(doc: dict[str, Any]) -> None:
        doc["tables"]["customers"]["columns"]["ssn"]["protect"] = {"op": "scramble"}

    path = _write(tmp_path, mutate)
    assert load_config(path).tables["customers"].columns["ssn"].protect.op == "scramble"
    with pytest.raises(ConfigError, match=r"column 'ssn': unknown protection op 'scramble'"):
        load_cfg(path)


def test_relative_paths_follow_the_config_file_not_the_working_directory(
    tmp_path: Path, monkeypatch
) -> None:
    """A scheduler may start the job anywhere: the file's relative paths (and the defaults) are
    anchored at its folder; `--lakehouse` / `--landing` given on the command line at the working
    directory; absolute paths and URIs are left alone."""
    conf = tmp_path / "deploy" / "conf"
    shutil.copytree(CONF.parent / "gates", conf / "gates")
    doc = yaml.safe_load(CONF.read_text())
    doc["keystore"] = {"provider": "local", "path": "../keys"}
    doc["spark"]["ivy_dir"] = "/opt/ivy"
    doc["lock_dir"] = "locks"
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config("../deploy/conf/pipeline.yaml")
    deploy = tmp_path / "deploy"
    assert cfg.lakehouse == str(deploy / "lakehouse")  # the shipped ../lakehouse
    assert cfg.landing == str(deploy / "landing")
    assert cfg.keystore.path == str(deploy / "keys")
    assert cfg.lock_dir == str(conf / "locks")
    assert cfg.spark.jars_dir == str(deploy / ".cache" / "jars")
    assert cfg.spark.ivy_dir == "/opt/ivy"
    given = load_config(deploy / "conf" / "pipeline.yaml", lakehouse="lh", landing="s3a://b/land")
    assert given.lakehouse == str(elsewhere / "lh") and given.landing == "s3a://b/land"
    # Paths are not part of what a commit records: the fingerprint does not move.
    assert given.fingerprint() == cfg.fingerprint()


def test_the_warehouse_and_an_embedded_metastore_live_in_the_lakehouse(tmp_path) -> None:
    from pyspark.sql import SparkSession

    from securepipe.config import CatalogConfig, SparkSettings
    from securepipe.spark import configure_builder

    lake = tmp_path / "lake"
    settings = SparkSettings(jars="provided", conf={"spark.driver.extraJavaOptions": "-Dmine=1"})
    plain = configure_builder(SparkSession.Builder(), settings, str(lake))._options
    # Without a catalog: the warehouse folder is not the working directory's spark-warehouse.
    assert plain["spark.sql.warehouse.dir"] == f"{lake}/_catalog/warehouse"
    assert "spark.sql.catalogImplementation" not in plain
    assert plain["spark.driver.extraJavaOptions"] == "-Dmine=1"
    embedded = configure_builder(
        SparkSession.Builder(),
        settings,
        str(lake),
        CatalogConfig(),
        driver_java_options=["-Dlog4j2.configurationFile=x"],
    )._options
    assert embedded["spark.sql.catalogImplementation"] == "hive"
    assert (
        f"databaseName={lake}/_catalog/metastore_db"
        in (embedded["spark.hadoop.javax.jdo.option.ConnectionURL"])
    )
    # The configuration's options, Derby's log in the lakehouse, then the caller's: all kept.
    assert embedded["spark.driver.extraJavaOptions"] == (
        f"-Dmine=1 -Dderby.stream.error.file={lake}/_catalog/derby.log -Dlog4j2.configurationFile=x"
    )
    external = configure_builder(
        SparkSession.Builder(), settings, "s3a://bucket/lake", CatalogConfig(metastore="external")
    )._options
    assert external["spark.sql.catalogImplementation"] == "hive"
    assert "spark.hadoop.javax.jdo.option.ConnectionURL" not in external


def test_catalog_names_come_from_the_layout_and_are_checked(tmp_path) -> None:
    from securepipe.layout import Layout

    cfg = load_cfg(CONF, lakehouse=str(tmp_path), catalog={"access_prefix": "role_"})
    layout = Layout.of(cfg)
    assert layout.table_name("customers") == "securepipe.customers"
    assert layout.quarantine_name("customers") == "securepipe_quarantine.customers"
    assert layout.access_name("analyst", "customers") == "role_analyst.customers"
    assert Layout.of(load_cfg(CONF, lakehouse=str(tmp_path))).table_name("customers") is None
    with pytest.raises(ConfigError, match=r"catalog\.database"):
        load_cfg(CONF, lakehouse=str(tmp_path), catalog={"database": "Bad-Name"})
    with pytest.raises(ConfigError, match="metastore embedded keeps a Derby database"):
        load_cfg(CONF, lakehouse="s3a://bucket/lake", catalog={"metastore": "embedded"})


@pytest.mark.parametrize("name", ["../../tables", "a/b", "x`y", "a.b", "-r"])
def test_a_role_name_that_could_leave_its_folder_is_refused(tmp_path: Path, name: str) -> None:
    # A role's table is access/<role>/<table>: `../../tables` would land on the published table.
    from securepipe.access.policy import load_access_policy
    from tests.builders import write_config

    path = write_config(tmp_path)
    role = {"tables": {"transactions": {"rows": "true", "columns": {"txn_id": "clear"}}}}
    (path.parent / "access" / "roles.yaml").write_text(yaml.safe_dump({"roles": {name: role}}))
    with pytest.raises(ConfigError, match=r"role name .* must match"):
        load_access_policy(path.parent / "access", load_cfg(path))


@pytest.mark.parametrize("name", ["../../etc/x", "a/b", "a.b"])
def test_a_gate_name_that_could_leave_the_gates_folder_is_refused(
    tmp_path: Path, name: str
) -> None:
    path = _write(tmp_path, lambda d: d["tables"]["customers"].update(gates=[name]))
    with pytest.raises(ConfigError, match=r"gate name .* must match"):
        load_config(path)


def test_the_strict_leak_scan_option_changes_the_hash_only_when_on() -> None:
    base = load_cfg(CONF)
    off = load_cfg(CONF, compliance={"detectors": {}, "strict": False})
    on = load_cfg(CONF, compliance={"detectors": {}, "strict": True})
    assert base.fingerprint() == off.fingerprint() != on.fingerprint()
