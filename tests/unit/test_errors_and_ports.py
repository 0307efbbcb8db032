"""The error tree in ``appliance.errors`` is the whole tree, and every port name is
reachable from ``appliance.ports`` without loading the other ports."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import appliance
import appliance.errors
import drivers
import sync
from appliance.errors import OrdoError

PORT_MODULES = ("card", "printer", "registry", "uow", "clock", "mail", "drugs")


def _import_all() -> None:
    for package in (appliance, drivers, sync):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def test_every_ordo_error_is_in_the_tree_of_appliance_errors():
    _import_all()
    ours = {c for c in _subclasses(OrdoError)
            if c.__module__.split(".")[0] in {"appliance", "drivers", "sync"}}
    assert len(ours) >= 25
    tree = appliance.errors.__doc__ or ""
    missing = sorted(c.__name__ for c in ours if f" {c.__name__} " not in tree)
    assert not missing, f"not in the tree of appliance.errors: {missing}"
    elsewhere = sorted(f"{c.__module__}.{c.__name__}" for c in ours
                       if c.__module__ != "appliance.errors")
    for name in elsewhere:  # defined beside their data: the tree names their module
        module = name.rsplit(".", 1)[0]
        assert f"({module}" in tree, f"{name}: the tree does not say where it lives"


def test_the_ports_package_exports_each_port_module_and_nothing_else():
    ports = importlib.import_module("appliance.ports")
    exported = dict(ports._EXPORTS)
    for name in PORT_MODULES:
        module = importlib.import_module(f"appliance.ports.{name}")
        for symbol in module.__all__:
            assert exported.pop(symbol) == name, symbol
            assert getattr(ports, symbol) is getattr(module, symbol)
    assert not exported


def test_one_port_does_not_load_the_others():
    code = ("import sys\nfrom appliance.ports import CardEvent\n"
            "print(sorted(m for m in sys.modules if m.startswith('appliance.ports.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['appliance.ports.card']"
