"""Fuzzing the settings (``appliance.config.load_settings``): a TOML file written by an
installer and ``ORDO_*`` environment overrides, both of any content.

The result is ``Settings`` whose values pass their checks, or a ``ConfigError`` naming the
key (``section.key``, the variable, or ``--config``) and what is expected.
"""

from __future__ import annotations

import json
import math
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appliance.config import Settings, load_settings
from appliance.errors import ConfigError
from tests.unit.test_fuzz_strategies import FUZZ, flip_bytes, mutated, odd_text, outcome

DEFAULTS: dict[str, dict[str, Any]] = tomllib.loads(
    resources.files("appliance").joinpath("defaults.toml").read_text("utf-8"))
ENV_NAMES = sorted(f"ORDO_{section.upper()}_{key.upper()}"
                   for section, keys in DEFAULTS.items() for key in keys)
URI_LIKE = ["tcp://h:99999", "tcp://[::1:9100", "http://[::1", "https://[zz]:1/fhir",
            "tcp://:0", "usb://04b8:0e15", "serial:///dev/ttyS0", "file://", "http://h:-1",
            "https://registre.invalid:65536/fhir", "tcp://host:port"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string accepts JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}"
                               for k, v in value.items()) + "}"
    return '""'  # None has no TOML form


def _toml(doc: Any) -> str:
    if not isinstance(doc, dict):
        return f"x = {_toml_value(doc)}\n"
    out = []
    for section, values in doc.items():
        if isinstance(values, dict):
            out.append(f"[{json.dumps(section)}]")
            out += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in values.items()]
        else:
            out.insert(0, f"{json.dumps(section)} = {_toml_value(values)}")
    return "\n".join(out) + "\n"


@st.composite
def config_files(draw) -> bytes:
    """A config file: the defaults mutated (wrong types, unknown keys, URIs on the edge),
    raw TOML text, or bytes that are not UTF-8."""
    kind = draw(st.sampled_from(["mutated", "mutated", "uri", "text", "bytes"]))
    if kind == "text":
        return draw(odd_text(80)).encode("utf-8", "surrogatepass")
    if kind == "bytes":
        return draw(flip_bytes(_toml(DEFAULTS).encode(), 4))
    doc = draw(mutated(DEFAULTS, 3))
    if kind == "uri" and isinstance(doc, dict):
        section, key = draw(st.sampled_from([("printer", "uri"), ("registry", "url"),
                                             ("referential", "bdpm_url")]))
        doc.setdefault(section, {})
        if isinstance(doc[section], dict):
            doc[section][key] = draw(st.sampled_from(URI_LIKE))
    return _toml(doc).encode("utf-8", "surrogatepass")


environments = st.dictionaries(
    st.sampled_from(ENV_NAMES) | st.sampled_from(["ORDO_", "ORDO_PRINTER", "ORDO_X_Y", "PATH"]),
    st.sampled_from([*URI_LIKE, "", " 0 ", "1e309", "nan", "-5", "9" * 5000, "oui", "\u0663"])
    | odd_text(20), max_size=3)


def _check(path: Path, data: bytes, environ: dict[str, str]) -> None:
    path.write_bytes(data)
    result = outcome(load_settings, config_file=path, data_dir=path.parent, environ=environ)
    if isinstance(result, ConfigError):  # the key as found: TOML allows an empty one ("" = 1)
        assert isinstance(result.key, str) and result.expected.strip()
        return
    assert isinstance(result, Settings)
    assert result.data_dir == path.parent and result.config_file == path


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config") / "ordo.toml"


@settings(FUZZ, max_examples=250)
@given(data=config_files(), environ=environments)
@example(data=b'[printer]\nuri = "tcp://h:99999"\n', environ={})
@example(data=b'[registry]\nurl = "http://[::1"\n', environ={})
@example(data=b"", environ={"ORDO_REFERENTIAL_BDPM_URL": "https://[zz]:1/x"})
@example(data=b"[establishment]\nname = \"EHPAD \xe9t\xe9\"\n", environ={})  # cp1252 bytes
@example(data=b"a = " + b"[" * 5000, environ={})
@example(data=b"", environ={"ORDO_SYNC_INTERVAL_S": "9" * 5000})
def test_settings_load_or_name_the_key(config_path, data, environ):
    _check(config_path, data, environ)


def test_a_directory_given_as_the_config_file_is_a_config_error(tmp_path):
    result = outcome(load_settings, config_file=tmp_path, data_dir=tmp_path, environ={})
    assert isinstance(result, ConfigError) and result.key == "--config"
