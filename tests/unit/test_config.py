"""Settings: defaults, TOML file, ORDO_* overrides, and clear refusals."""

from pathlib import Path

import pytest

from appliance.config import SYSTEM_DATA_DIR, load_settings
from appliance.errors import ConfigError


def test_defaults_are_valid(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, environ={})
    assert s.printer.uri == "tcp://127.0.0.1:9100"
    assert s.db_path == tmp_path / "ordo.sqlite"
    assert s.security.trust_roots == ()


def test_file_then_environment_override(tmp_path: Path) -> None:
    cfg = tmp_path / "ordo.toml"
    cfg.write_text('[printer]\nuri = "tcp://10.0.0.5:9100"\nmedia = "58mm"\n'
                   '[security]\ntrust_roots = ["/etc/ordo/ca.pem"]\n')
    env = {"ORDO_PRINTER_URI": "usb://04b8:0e15", "ORDO_SYNC_BATCH_SIZE": "20",
           "ORDO_SECURITY_CRLS": "/a.crl, /b.crl"}
    s = load_settings(config_file=cfg, data_dir=tmp_path, environ=env)
    assert s.printer.uri == "usb://04b8:0e15"
    assert s.printer.media == "58mm"
    assert s.sync.batch_size == 20
    assert s.security.trust_roots == ("/etc/ordo/ca.pem",)
    assert s.security.crls == ("/a.crl", "/b.crl")


def test_config_from_environment_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[establishment]\nname = "EHPAD Les Tilleuls"\n')
    s = load_settings(environ={"ORDO_CONFIG": str(cfg), "ORDO_DATA_DIR": str(tmp_path)})
    assert s.establishment.name == "EHPAD Les Tilleuls"
    assert s.data_dir == tmp_path and s.config_file == cfg


@pytest.mark.parametrize(
    ("env", "key", "value"),
    [
        ({"ORDO_PRINTER_URI": "lpt1"}, "printer.uri", "lpt1"),
        ({"ORDO_PRINTER_MEDIA": "A4"}, "printer.media", "A4"),
        ({"ORDO_SYNC_BATCH_SIZE": "many"}, "ORDO_SYNC_BATCH_SIZE", "many"),
        ({"ORDO_SECURITY_IDLE_TIMEOUT_S": "5"}, "security.idle_timeout_s", 5),
        ({"ORDO_ESTABLISHMENT_FINESS": "12345"}, "establishment.finess", "12345"),
        ({"ORDO_PRINTR_URI": "tcp://a:1"}, "ORDO_PRINTR_URI", "tcp://a:1"),
    ],
)
def test_invalid_value_names_key_value_and_expectation(tmp_path, env, key, value) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(data_dir=tmp_path, environ=env)
    assert err.value.key == key
    assert err.value.value == value
    assert err.value.expected


def test_unknown_key_and_bad_type_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[printer]\nurl = "tcp://a:1"\n')
    with pytest.raises(ConfigError, match=r"printer\.url"):
        load_settings(config_file=cfg, data_dir=tmp_path, environ={})
    cfg.write_text("[sync]\nbatch_size = \"10\"\n")
    with pytest.raises(ConfigError, match="un entier"):
        load_settings(config_file=cfg, data_dir=tmp_path, environ={})
    cfg.write_text("[sync\n")
    with pytest.raises(ConfigError, match="TOML valide"):
        load_settings(config_file=cfg, data_dir=tmp_path, environ={})


def test_default_data_dir_is_xdg_for_a_user(tmp_path: Path) -> None:
    s = load_settings(environ={"XDG_DATA_HOME": str(tmp_path)})
    assert s.data_dir in {tmp_path / "ordo", SYSTEM_DATA_DIR}


def test_secrets_are_masked(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, environ={"ORDO_SECURITY_BACKUP_KEY": "/k/secret.key"})
    assert s.as_dict()["security"]["backup_key"] == "********"
    assert s.as_dict(mask_secrets=False)["security"]["backup_key"] == "/k/secret.key"


def test_partner_pharmacy_section(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[pharmacy]\nname = "Pharmacie du Centre"\nfiness = "010000024"\n')
    s = load_settings(config_file=cfg, data_dir=tmp_path, environ={})
    assert (s.pharmacy.name, s.pharmacy.finess) == ("Pharmacie du Centre", "010000024")
    assert s.as_dict()["pharmacy"]["address"] == ""
    with pytest.raises(ConfigError) as err:
        load_settings(data_dir=tmp_path, environ={"ORDO_PHARMACY_FINESS": "12"})
    assert (err.value.key, err.value.value) == ("pharmacy.finess", "12")


def test_ordo_alone_prints_the_help_off_the_appliance(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from appliance.cli import main

    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "Usage:" in result.output and "kiosk" in result.output


# -- every setting bounded ------------------------------------------------------------------------
@pytest.mark.parametrize("uri", [
    "file:///etc/passwd", "file:///dev/../etc/passwd", "file:///dev/sda", "file:///dev/usb/..",
    "file://host/dev/usb/lp0", "serial:///etc/shadow?baudrate=9600", "serial:///dev/usb/lp0",
    "file:///dev/usb/lp0/../../sda", "tcp://printer:0", "file:///tmp/out.bin",
])
def test_the_printer_can_only_be_a_printer(tmp_path: Path, uri: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(data_dir=tmp_path, environ={"ORDO_PRINTER_URI": uri})
    assert err.value.key == "ORDO_PRINTER_URI" or err.value.key == "printer.uri"
    assert "/dev/usb/lp" in err.value.expected


@pytest.mark.parametrize("uri", [
    "file:///dev/usb/lp0", "file:///dev/lp1", "file:///dev/ttyUSB0",
    "serial:///dev/ttyS0?baudrate=19200", "serial:///dev/ttyACM1",
    "serial:///dev/serial/by-id/usb-EPSON_TM-T20II-if00", "tcp://10.0.0.5:9100",
    "usb://04b8:0e15",
])
def test_printer_devices_and_addresses(tmp_path: Path, uri: str) -> None:
    assert load_settings(data_dir=tmp_path, environ={"ORDO_PRINTER_URI": uri}).printer.uri == uri


@pytest.mark.parametrize("text,key", [
    ("[sync]\ninterval_s = 100000000000000000000000\n", "sync.interval_s"),
    ("[sync]\ninterval_s = 0\n", "sync.interval_s"),
    ("[sync]\nbackoff_cap_s = 9999999999\n", "sync.backoff_cap_s"),
    ("[registry]\ntimeout_s = inf\n", "registry.timeout_s"),
    ("[registry]\ntimeout_s = 1e23\n", "registry.timeout_s"),
    ("[registry]\ntimeout_s = 0.01\n", "registry.timeout_s"),
    ("[retention]\naudit_years = 5000\n", "retention.audit_years"),
    ("[retention]\nprescriptions_years = 1000\n", "retention.prescriptions_years"),
    ('[establishment]\nname = "EHPAD \\u001b[2J"\n', "establishment.name"),
    ('[establishment]\naddress = "1 rue \\u202e"\n', "establishment.address"),
    (f'[registry]\nclient_cert = "/{"x" * 5000}"\n', "registry.client_cert"),
    ('[security]\ntrust_roots = ["/ok.pem", "/bad\\u0000.pem"]\n', "security.trust_roots"),
])
def test_every_value_is_bounded(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "ordo.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg, data_dir=tmp_path, environ={})
    assert err.value.key == key


def test_the_environment_is_bounded_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(data_dir=tmp_path, environ={"ORDO_SYNC_INTERVAL_S": "86400000"})
    assert err.value.key == "sync.interval_s" and "3600" in err.value.expected


def test_the_configuration_files_ordo_writes_read_back_as_written(tmp_path):
    from appliance.config import write_config

    path = write_config(tmp_path / "ordo.toml", {
        "establishment": {"name": 'EHPAD « Les Tilleuls » "2" \\ é', "finess": "750000001"},
        "security": {"trust_roots": ["/a b/c.pem", "d.pem"], "idle_timeout_s": 60},
    }, header="a test\nconfiguration")
    assert path.read_text("utf-8").startswith("# a test\n# configuration\n[establishment]")
    settings = load_settings(config_file=path, environ={})
    assert settings.establishment.name == 'EHPAD « Les Tilleuls » "2" \\ é'
    assert settings.security.trust_roots == ("/a b/c.pem", "d.pem")
    assert settings.security.idle_timeout_s == 60
