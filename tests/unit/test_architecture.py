"""The domain stays pure: only the standard library, python-stdnum and rfc8785, and no
module that does I/O. (import-linter guards the project's own layers; this guards the rest.)"""

import ast
import re
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "appliance" / "domain"
ALLOWED_THIRD_PARTY = {"stdnum", "rfc8785", "appliance"}
IO_MODULES = {"os", "io", "socket", "sqlite3", "subprocess", "pathlib", "shutil", "tempfile",
              "urllib", "http", "logging", "asyncio", "select", "ssl", "time"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_domain_imports_only_pure_modules():
    files = sorted(DOMAIN.glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for name in _imports(path):
            if name in ALLOWED_THIRD_PARTY:
                continue
            assert name in sys.stdlib_module_names, f"{path.name} imports {name}"
            assert name not in IO_MODULES, f"{path.name} imports {name} (I/O)"


def test_domain_only_imports_errors_from_the_rest_of_appliance():
    for path in DOMAIN.glob("*.py"):
        source = path.read_text("utf-8")
        for line in source.splitlines():
            if line.startswith(("from appliance.", "import appliance")):
                assert line.startswith(("from appliance.domain", "from appliance.errors")), line


TABLE_OWNERS = {"residents": "residents", "practitioners": "practitioners",
                "prescriptions": "prescriptions", "outbox": "outbox",
                "print_jobs": "print_jobs", "meta": "meta", "audit": "audit",
                "dispensations": "dispensations", "mail_outbox": "mail_outbox",
                "external_prescriptions": "external_prescriptions", "allergies": "allergies",
                "prescription_alerts": "prescription_alerts", "stopped_lines": "stopped_lines",
                "certificates": "certificates",
                "audit_anchors": "audit_anchors", "_migrations": "migrations"}
WRITE = re.compile(r"(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)"
                   r"\s+\"?(\w+)\b")


def test_each_table_is_written_by_its_owner_module_only():
    """The store's tables are written by one module each (``appliance/store/<table>.py``);
    the others go through its functions (the registry simulator has its own database)."""
    root = DOMAIN.parents[1]
    seen = set()
    for package in ("appliance", "drivers", "sync"):
        for path in (root / package).rglob("*.py"):
            if "registry_sim" in path.parts:
                continue
            for table in WRITE.findall(path.read_text("utf-8")):
                owner = TABLE_OWNERS.get(table.lower())
                if owner is None:
                    continue
                seen.add(table.lower())
                assert path == root / "appliance" / "store" / f"{owner}.py", \
                    f"{path.relative_to(root)} writes the table {table}"
    assert seen >= {"outbox", "print_jobs", "meta", "audit", "dispensations", "mail_outbox",
                    "external_prescriptions", "allergies", "prescription_alerts", "stopped_lines"}


def test_the_kiosk_never_reads_text_as_markup():
    """Names, reasons, drug labels and flags like "[ALD]" or "[x]" come from people and
    files: every text widget of the kiosk shows them as written (markup=False). With markup
    on, "[MTE]" vanishes from the screen and a typed "[/b]" stops the kiosk."""
    tui = DOMAIN.parent / "tui"
    reading_markup = []
    for path in tui.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in {"Static", "OptionList"}
                    and not any(k.arg == "markup" and isinstance(k.value, ast.Constant)
                                and k.value.value is False for k in node.keywords)):
                reading_markup.append(f"{path.relative_to(tui)}:{node.lineno}")
    assert reading_markup == []
