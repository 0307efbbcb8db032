"""The alert rules and the fleet dashboard shipped in ``ops/``: promtool loads the rules and
runs their unit tests (each alert fires, and stays quiet, when it should), and every
expression of the rules and of the dashboard names only metrics the endpoint exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from appliance.ops.metrics import METRICS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "prometheus" / "ordo-alerts.yml"
RULE_TESTS = ROOT / "ops" / "prometheus" / "ordo-alerts.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "ordo-fleet.json"
# Prometheus's own series of each scrape target (the sync service not answering at all).
PROMETHEUS_OWN = {"up"}
# What the issue asks the rules to cover, by alert name.
REQUIRED_ALERTS = {"OrdoQueueStuck", "OrdoQuarantined", "OrdoPrinterPaperOut",
                   "OrdoBackupStale", "OrdoReferentialStale", "OrdoRegistryDown",
                   "OrdoCardReaderAbsent"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:on|ignoring|by|without|group_left|group_right)\s*\([^)]*\)")
_WORD = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "sum", "count", "min", "max", "avg",
             "topk", "bottomk", "inf", "nan"}


def promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv-tools" / "bin" / "promtool")
    if not Path(found).is_file():
        pytest.fail("promtool is missing: `make env` installs it into .venv-tools/bin")
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, label names of
    matchers and groupings, numbers and durations left out)."""
    bare = _GROUPING.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub(" ", expr))))
    names = set()
    for word, call in _WORD.findall(bare):
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def alert_rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text("utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[str]:
    board = json.loads(DASHBOARD.read_text("utf-8"))
    queries = [target["expr"] for panel in board["panels"]
               for target in panel.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
            assert match, query
            queries.append(match.group(1))
    return queries


def test_promtool_loads_the_rules_and_their_unit_tests_pass():
    checked = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout
    tested = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True,
                            text=True, timeout=60, check=False, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_promtool_refuses_a_broken_rule(tmp_path):
    """The check above is not a formality: promtool rejects what Prometheus would."""
    broken = tmp_path / "broken.yml"
    broken.write_text(RULES.read_text("utf-8").replace(
        "ordo_outbox_quarantined > 0", "ordo_outbox_quarantined >> 0"))
    checked = subprocess.run([promtool(), "check", "rules", str(broken)], capture_output=True,
                             text=True, timeout=60, check=False)
    assert checked.returncode != 0


def test_every_alert_reads_only_exported_metrics():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= set(METRICS) | PROMETHEUS_OWN, (rule["alert"], names - set(METRICS))
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    tested = yaml.safe_load(RULE_TESTS.read_text("utf-8"))
    seen = {case["alertname"] for test in tested["tests"] for case in test["alert_rule_test"]}
    assert seen == {rule["alert"] for rule in rules}  # every alert has a unit test


def test_every_dashboard_query_reads_only_exported_metrics():
    queries = dashboard_queries()
    used = set()
    for expr in queries:
        names = metric_names(expr)
        assert names, expr
        assert names <= set(METRICS) | PROMETHEUS_OWN, (expr, names - set(METRICS))
        used |= names
    board = json.loads(DASHBOARD.read_text("utf-8"))
    assert "finess" in {v["name"] for v in board["templating"]["list"]}
    for expr in queries:
        if "ordo_" in expr and "ordo_build_info" not in expr.split("(")[0]:
            assert 'finess=~"$finess"' in expr, expr  # every panel follows the selection
    # a panel for every gauge but the version
    assert set(METRICS) - {"ordo_build_info", "ordo_card_readers"} <= used


def test_the_name_finder_is_not_fooled():
    expr = ('ordo_card_reader_present{finess=~"$x"} == 0 and on(finess) (hour() >= 6) '
            'unless ignoring(job) rate(up[5m]) > bool 36 * 3600')
    assert metric_names(expr) == {"ordo_card_reader_present", "up"}
    assert metric_names("ordo_nonexistent > 1") == {"ordo_nonexistent"}
