"""What operators see: the Grafana dashboard in deploy/ queries only metrics that exist (the app's
own, from the code that defines them, or Ray Serve's, from Ray's installed source), has a panel for
each of the app's metrics, and the README lists every one of them under its Prometheus name. Pure
file checks, no cluster."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import ray.serve

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana-tts-dashboard.json"
# Where the app defines its metrics (ray.serve.metrics): the worker's and the ingress's code.
APP_SOURCES = [REPO / "deployments", REPO / "serve_app"]
SERVE_SOURCES = [Path(ray.serve.__file__).parent / "_private"]

# What Ray's Prometheus exporter makes of a metric called NAME: the ray_ prefix, a counter's
# _total, a histogram's three series.
EXPORTED_SUFFIXES = {"Counter": ["_total"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count"]}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}


def defined_metrics(roots: list[Path]) -> dict[str, str]:
    """Metric name (a regular expression where the code builds it with an f-string) -> its kind,
    for every Counter/Gauge/Histogram(...) call under `roots` whose name is written in the call."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                kind = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if kind not in EXPORTED_SUFFIXES:
                    continue
                name = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "name"), None)
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    found[re.escape(name.value)] = kind
                elif isinstance(name, ast.JoinedStr):
                    found["".join(re.escape(part.value) if isinstance(part, ast.Constant) else "[a-z0-9_]+"
                                  for part in name.values)] = kind
    return found


def exported(metrics: dict[str, str]) -> list[str]:
    """Regular expressions of the names Prometheus shows for `metrics`."""
    return [f"ray_{name}{suffix}" for name, kind in metrics.items() for suffix in EXPORTED_SUFFIXES[kind]]


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels, keywords or variables)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                 # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)                            # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)                           # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\$\{?\w+\}?", "", expr)                          # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if expr[match.end():].lstrip().startswith("(") or match.group() in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(match.group())
    return names


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    return [p for top in board["panels"] for p in [top, *top.get("panels", [])]]


def queried_metrics(board: dict) -> dict[str, set[str]]:
    """Metric name -> titles of the panels (or variables) that query it."""
    queried: dict[str, set[str]] = {}
    for panel in panels(board):
        for target in panel.get("targets", []):
            for name in promql_metric_names(target["expr"]):
                queried.setdefault(name, set()).add(panel["title"])
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else ""
        label_values = re.fullmatch(r"\s*label_values\(\s*([a-zA-Z_:][\w:]*)\s*(?:\{[^}]*\})?\s*,\s*\w+\s*\)\s*", query)
        names = {label_values.group(1)} if label_values else promql_metric_names(query)
        for name in names:
            queried.setdefault(name, set()).add(f"${variable['name']}")
    return queried


def test_the_parser_finds_metric_names_only():
    expr = ('histogram_quantile(0.99, sum by (le, replica) (rate(ray_tts_step_seconds_bucket'
            '{application=~"$application", deployment="TTSWorker"}[$__rate_interval]))) '
            '/ on (replica) group_left ray_tts_free_slots > bool 0.08')
    assert promql_metric_names(expr) == {"ray_tts_step_seconds_bucket", "ray_tts_free_slots"}


def test_the_dashboard_queries_only_metrics_that_exist():
    app = exported(defined_metrics(APP_SOURCES))
    serve = exported(defined_metrics(SERVE_SOURCES))
    assert app, "the app's metric definitions were not found"
    assert len(serve) > 20, "Ray Serve's metric definitions were not found in its source"
    unknown = {name: sorted(where) for name, where in queried_metrics(dashboard()).items()
               if not any(re.fullmatch(pattern, name) for pattern in app + serve)}
    assert not unknown, f"the dashboard queries metrics nothing defines: {unknown}"


def test_every_metric_of_the_app_has_a_panel():
    queried = set(queried_metrics(dashboard()))
    missing = [name for name, kind in defined_metrics(APP_SOURCES).items()
               if not any(re.fullmatch(f"ray_{name}{suffix}", q) for q in queried for suffix in EXPORTED_SUFFIXES[kind])]
    assert not missing, f"metrics without a panel: {missing}"


def test_the_readme_lists_every_metric_of_the_app_by_its_prometheus_name():
    readme = (REPO / "README.md").read_text()
    missing = []
    for name, kind in defined_metrics(APP_SOURCES).items():
        shown = f"ray_{name}" + ("_total" if kind == "Counter" else "")
        if not re.search(rf"`{shown}`", readme):
            missing.append(shown.replace("\\", ""))
    assert not missing, f"README does not list: {missing}"
    assert "deploy/grafana-tts-dashboard.json" in readme


def test_the_dashboard_is_a_valid_grafana_dashboard_on_a_chosen_datasource():
    board = dashboard()
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == "${datasource}" and t["expr"] for t in panel["targets"])
    # Panels do not overlap.
    cells = set()
    for panel in panels(board):
        grid = panel["gridPos"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("title, threshold", [("Engine step time (80 ms = real time)", 0.08)])
def test_step_time_is_drawn_against_the_real_time_line(title, threshold):
    (panel,) = [p for p in panels(dashboard()) if p["title"] == title]
    assert "ray_tts_step_seconds_bucket" in " ".join(t["expr"] for t in panel["targets"])
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    assert [s["value"] for s in defaults["thresholds"]["steps"]][1:] == [threshold]


def test_no_panel_is_bound_to_one_worker_deployment():
    """An app has a worker deployment per model (TTSWorker, TTSWorker_<name>): every panel of the
    workers' metrics covers them all and tells them apart."""
    text = json.dumps(dashboard())
    assert 'deployment=\\"TTSWorker\\"' not in text
    assert text.count('deployment=~\\"TTSWorker.*\\"') >= 10


def test_the_workers_metrics_are_told_apart_by_model():
    """Every worker metric carries `model` (deployments/serve/metrics.py): each panel of one groups
    by it and follows the dashboard's model picker, whose choices are the models that report."""
    board = dashboard()
    worker_queries = [t["expr"] for p in panels(board) for t in p.get("targets", [])
                      if re.search(r"ray_tts_(?!ingress)", t["expr"])]
    assert len(worker_queries) >= 10
    for expr in worker_queries:
        assert 'model=~"$model"' in expr and re.search(r"by \([^)]*\bmodel\b", expr), expr
    (picker,) = [v for v in board["templating"]["list"] if v["name"] == "model"]
    assert picker["query"]["query"] == 'label_values(ray_tts_requests_total{application=~"$application"}, model)'
