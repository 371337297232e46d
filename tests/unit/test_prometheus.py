"""Alert rules, dashboards and the generated Prometheus config, checked with the real promtool.

promtool comes with Debian's ``prometheus`` package, which ``llmhub stack up`` installs; without
it (a machine where the stack was never brought up) the promtool tests skip, unless
``LLMHUB_REQUIRE_STACK=1`` (CI), where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from llmhub.ingest.metrics import exposed_names
from llmhub.stack.prometheus import (
    RULES_DIR,
    binary,
    scrape_config,
    write_config,
)

INFRA = Path(__file__).resolve().parents[2] / "infra"
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
RULE_TESTS = sorted((RULES_DIR / "tests").glob("*_test.yml"))
GRAFANA = INFRA / "grafana"

# PromQL words that look like identifiers but are not metric names.
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "le",
}  # fmt: skip


def _promtool() -> str:
    promtool = binary("promtool")
    if promtool is None:
        if os.environ.get("LLMHUB_REQUIRE_STACK") == "1":
            pytest.fail("promtool missing: `llmhub stack up` installs it", pytrace=False)
        pytest.skip("promtool is not installed (`llmhub stack up` installs it)")
    return promtool


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False)


def metric_names(expr: str) -> set[str]:
    """Metric (and recording-rule) names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group(0)
        following = expr[match.end() :].lstrip()[:1]
        if following == "(" or word.lower() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        if re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def _rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _build_dashboards() -> ModuleType:
    path = GRAFANA / "build_dashboards.py"
    spec = importlib.util.spec_from_file_location("llmhub_build_dashboards", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses resolve their annotations through the module registry.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _dashboard_exprs() -> list[tuple[str, str]]:
    exprs = []
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            exprs.extend((panel["title"], target["expr"]) for target in panel["targets"])
    return exprs


def test_metric_names_parser_finds_metrics_not_functions() -> None:
    expr = (
        'sum by (topic) (rate(a_total{topic=~"x"}[5m])) / on (topic) b_seconds_bucket'
        " > 0.05 and time() - max(c) > 600"
    )
    assert metric_names(expr) == {"a_total", "b_seconds_bucket", "c"}


def test_rule_files_pass_promtool_check() -> None:
    assert RULE_FILES, f"no *.rules.yml in {RULES_DIR}"
    result = _run(_promtool(), "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass_promtool_test() -> None:
    assert RULE_TESTS
    result = _run(_promtool(), "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_three_required_alerts_exist_and_are_unit_tested() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert {"IngestConsumerLagHigh", "IngestDeadLetterRateHigh", "IngestConsumerStalled"} <= alerts
    tested = {
        case["alertname"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert alerts <= tested


def test_rules_read_only_metrics_the_ingester_exports() -> None:
    records = {rule["record"] for rule in _rules() if "record" in rule}
    for rule in _rules():
        unknown = metric_names(rule["expr"]) - exposed_names() - records
        assert not unknown, f"{rule.get('alert') or rule.get('record')} reads {unknown}"


def test_dashboards_are_generated_from_their_spec() -> None:
    module = _build_dashboards()
    generated = module.files()
    on_disk = set((GRAFANA / "dashboards").glob("*.json"))
    assert set(generated) == on_disk, "run python infra/grafana/build_dashboards.py"
    for path, text in generated.items():
        assert path.read_text() == text, f"{path.name} is stale: run build_dashboards.py"


def test_dashboard_queries_read_only_metrics_the_ingester_exports() -> None:
    exprs = _dashboard_exprs()
    assert exprs
    for title, expr in exprs:
        unknown = metric_names(expr) - exposed_names()
        assert not unknown, f"panel {title!r} queries {unknown}"


def test_dashboard_structure() -> None:
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        assert board["uid"] == path.stem and board["title"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
        variables = {v["name"] for v in board["templating"]["list"]}
        assert "datasource" in variables
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            grid = panel["gridPos"]
            assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
            covered = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not covered & cells, f"panel {panel['title']!r} overlaps another"
            cells |= covered
            assert panel["datasource"]["uid"] == "${datasource}"
            assert [t["refId"] for t in panel["targets"]] == [
                chr(ord("A") + i) for i in range(len(panel["targets"]))
            ]
            for target in panel["targets"]:
                used = set(re.findall(r"\$(\w+)", target["expr"]))
                assert used <= variables, f"{panel['title']!r} uses undefined {used - variables}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool has no query parser of its own: each query becomes a recording rule it checks.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": re.sub(r"\$\w+", ".*", expr)}
        for i, (_, expr) in enumerate(_dashboard_exprs())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = _run(_promtool(), "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    _promtool()
    config = scrape_config(
        "127.0.0.1:9090",
        ["127.0.0.1:9464"],
        "127.0.0.1:9465",
        [str(path) for path in RULE_FILES],
    )
    write_config(tmp_path / "prometheus.yml", config)
    jobs = {
        job["job_name"]
        for job in yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"]
    }
    assert jobs == {"prometheus", "llmhub-ingest", "llmhub-dagster-ingest"}


def test_an_invalid_config_is_refused(tmp_path: Path) -> None:
    _promtool()
    from llmhub.stack.timescale import StackError

    config = scrape_config("127.0.0.1:9090", ["127.0.0.1:9464"], None, [])
    config["global"]["scrape_interval"] = "soon"
    with pytest.raises(StackError, match="invalid"):
        write_config(tmp_path / "prometheus.yml", config)
    assert not (tmp_path / "prometheus.yml").exists()
