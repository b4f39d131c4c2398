"""deploy/prometheus/alerts.yml and deploy/grafana/framequeue.json against a live API's /metrics.

Every PromQL expression is parsed by ``promql-parser`` (a PyPI build of a Rust PromQL parser:
syntax, function names and arity). Where Debian's ``prometheus`` package is installed,
``promtool check rules`` checks the rule file as Prometheus loads it and ``promtool test rules``
runs deploy/prometheus/alerts_test.yml, which feeds each alert series and says when it must fire.
Every metric the files name must be a family that a running API exports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from queue_config.settings import Settings
from tests.api.test_jobs_api import api_server
from tests.api.test_ops import namespace_for
from tests.servers import REPO_ROOT

ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO_ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "framequeue.json"
TOKEN = "monitoring-token"
#: The sample names each family type exports besides (or instead of) the family's own name.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count"),
            "gauge": ("",), "untyped": ("",)}


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def panel_targets() -> list[dict[str, Any]]:
    return [target for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metrics an expression selects (``rate(x[5m])`` names x)."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


@pytest.fixture(scope="module")
def exported(settings: Settings) -> Iterator[set[str]]:
    """Every sample name a live API's /metrics declares, on a namespace of its own (empty families included)."""
    ns = namespace_for(settings, "monitoring")
    with api_server(ns.settings.model_copy(update={"api_token": TOKEN})) as url:
        response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert response.status_code == 200, response.text
    yield {family.name + suffix for family in text_string_to_metric_families(response.text)
           for suffix in SUFFIXES[family.type]}


def test_every_alert_expression_parses_and_names_its_severity() -> None:
    for rule in rules():
        promql_parser.parse(rule["expr"])
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_the_alerts_cover_message_age_dead_letters_keys_and_workers() -> None:
    named = {name for rule in rules() for name in metric_names(rule["expr"])}

    assert {"framequeue_queue_oldest_message_age_seconds", "framequeue_stage_runs_total", "framequeue_queue_messages",
            "framequeue_usable_keys", "framequeue_workers_live"} <= named


def test_a_broken_expression_is_refused_by_the_parser() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("max by (stage) (framequeue_workers_live > 0")


def test_every_metric_the_alerts_and_the_dashboard_name_is_exported(exported: set[str]) -> None:
    named = {name for rule in rules() for name in metric_names(rule["expr"])}
    named |= {name for target in panel_targets() for name in metric_names(target["expr"])}

    assert named - exported == set()
    assert len(named) >= 10


def test_the_dashboard_queries_parse_and_use_its_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [variable] = dashboard["templating"]["list"]

    assert (dashboard["uid"], variable["type"], variable["query"]) == ("framequeue", "datasource", "prometheus")
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for target in panel_targets():
        promql_parser.parse(target["expr"])
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    queries = " ".join(target["expr"] for target in panel_targets())
    assert "histogram_quantile(0.95, sum by (le, stage) (rate(framequeue_stage_duration_seconds_bucket" in queries


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (apt-get install prometheus); "
                    "the expressions are still parsed by promql-parser")
def test_promtool_loads_the_rules_and_each_alert_fires_when_its_test_says() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    tested = subprocess.run(["promtool", "test", "rules", str(ALERTS_TEST)], capture_output=True, text=True,
                            timeout=120)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = {test["alertname"] for case in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
                     for test in case["alert_rule_test"]}
    assert tested_alerts == {rule["alert"] for rule in rules()}
