"""deploy/: the systemd unit, Prometheus config and rules (promtool and a real server), Grafana dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from daemon.metrics import Metrics
from tests.support import REPO, free_port

pytestmark = pytest.mark.integration

DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "faultcast.service"
PROM_DIR = DEPLOY / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
RULES = PROM_DIR / "faultcast-rules.yml"
RULE_TESTS = PROM_DIR / "faultcast-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "faultcast.json"
OPERATIONS = REPO / "docs" / "operations.md"

WAIT_S = 60.0
# A metric name in PromQL; a name inside a recording rule's name (`level:metric:ops`) is not one.
METRIC_NAME = re.compile(r"(?<![\w:])faultcast_[A-Za-z0-9_]+(?![\w:])")
RECORDING_NAME = re.compile(r"(?<![\w:])[a-z_]+:[A-Za-z0-9_]+:[A-Za-z0-9_]+(?![\w:])")
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"{name} not found on PATH: install Debian's `prometheus` package "
            "(apt-get install prometheus), which provides prometheus and promtool"
        )
    return path


@pytest.fixture(scope="module")
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(scope="module")
def prometheus_bin() -> str:
    return _tool("prometheus")


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=WAIT_S, check=False)


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load_yaml(RULES)["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; row panels themselves are left out."""
    out: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def _panel_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) for every query target of every panel."""
    return [
        (p["title"], t["expr"]) for p in _panels(dashboard) for t in p.get("targets", []) if t.get("expr")
    ]


def _variable_queries(dashboard: dict[str, Any]) -> list[str]:
    out = []
    for var in dashboard["templating"]["list"]:
        query = var.get("query")
        if var["type"] == "query":
            out.append(query["query"] if isinstance(query, dict) else str(query))
    return out


def _substitute(expr: str, values: dict[str, str]) -> str:
    """Replaces Grafana's $var, ${var} and [[var]] forms; an unknown variable is a KeyError."""

    def value(match: re.Match[str]) -> str:
        return values[next(g for g in match.groups() if g)]

    return GRAFANA_VARIABLE.sub(value, expr)


def _exported_metrics() -> tuple[set[str], list[Any]]:
    """Sample names and families in the daemon's exposition, with every labelled metric touched once."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for metric in vars(metrics).values():
        labelnames = getattr(metric, "_labelnames", ())
        if labelnames:
            child = metric.labels(*(f"x{i}" for i in range(len(labelnames))))
            if hasattr(child, "info"):
                child.info({"version": "1"})
    exposition = generate_latest(registry).decode()
    samples = {s.name for f in text_string_to_metric_families(exposition) for s in f.samples}
    return samples, list(registry.collect())


def _github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


# --- systemd unit ------------------------------------------------------------------------------------------


def _parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values in order (systemd keys may repeat); comments are dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _seconds(value: str) -> float:
    units = {"": 1.0, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def test_unit_has_the_directives_production_needs() -> None:
    text = UNIT.read_text(encoding="utf-8")
    unit = _parse_unit(text)
    service, unit_section = unit["Service"], unit["Unit"]

    def one(key: str, section: dict[str, list[str]] = service) -> str:
        assert key in section, f"{key}= missing"
        return section[key][-1]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert 10 <= _seconds(one("WatchdogSec")) <= 300
    assert one("Restart") == "on-failure"
    assert _seconds(one("RestartSec")) >= 1
    # A Kafka outage ends the daemon with an error; the unit must not be left failed when Kafka is back.
    assert _seconds(one("StartLimitIntervalSec", unit_section)) == 0, "restarts must never stop"
    assert re.fullmatch(r"/\S*/kill -(HUP|SIGHUP|s HUP) \$MAINPID", one("ExecReload"))
    assert _seconds(one("TimeoutStopSec")) >= 60, "stop must leave time to finish a wave, flush and commit"
    exec_start = one("ExecStart").split()
    assert exec_start[0].startswith("/") and exec_start[0].endswith("/bin/faultcast")
    assert exec_start[1:] == ["run", "--config", "/etc/faultcast/config.yaml"]
    assert one("DynamicUser") == "yes" or one("User") == "faultcast"
    assert one("StateDirectory") == "faultcast"
    hardening = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "LockPersonality": "yes",
    }
    for key, value in hardening.items():
        assert one(key) == value, f"{key}={value} expected"
    assert one("CapabilityBoundingSet") == ""
    assert re.search(r"^#\s*MemoryMax=\d+[KMGT]?\s*$", text, re.MULTILINE), "MemoryMax= belongs as a tunable"
    assert one("WantedBy", unit["Install"]) == "multi-user.target"


def _verify(systemd_analyze: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return _run([systemd_analyze, "verify", str(unit)], cwd=unit.parent)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    systemd_analyze = shutil.which("systemd-analyze")
    if systemd_analyze is None:
        pytest.skip("systemd-analyze not found (Debian package `systemd`); the directive test still runs")
    probe = tmp_path / "probe" / "faultcast-probe.service"
    probe.parent.mkdir()
    probe.write_text("[Service]\nType=simple\nExecStart=/bin/true\n", encoding="utf-8")
    result = _verify(systemd_analyze, probe)
    if result.returncode != 0 or result.stderr.strip():
        pytest.skip(f"systemd-analyze verify does not work here: {result.stderr.strip()[:300]}")

    # verify wants ExecStart's program to exist; the venv is not installed here, so point it at /bin/true.
    text = UNIT.read_text(encoding="utf-8")
    program = _parse_unit(text)["Service"]["ExecStart"][-1].split()[0]
    copy = tmp_path / "faultcast.service"
    copy.write_text(text.replace(program, "/bin/true"), encoding="utf-8")
    result = _verify(systemd_analyze, copy)
    # verify exits 0 on unknown keys and bad values but reports them on stderr: both must be clean.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr

    broken = tmp_path / "broken" / "faultcast.service"
    broken.parent.mkdir()
    misspelt = copy.read_text(encoding="utf-8").replace("WatchdogSec=", "WatchdogSecs=")
    broken.write_text(misspelt, encoding="utf-8")
    assert "WatchdogSecs" in _verify(systemd_analyze, broken).stderr, "verify must report a misspelt key"


# --- Prometheus files, statically ------------------------------------------------------------------------


def test_promtool_check_config(promtool: str) -> None:
    result = _run([promtool, "check", "config", str(PROM_CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = [job["job_name"] for job in _load_yaml(PROM_CONFIG)["scrape_configs"]]
    assert "faultcast" in jobs
    assert _load_yaml(PROM_CONFIG)["rule_files"] == [RULES.name]


def test_promtool_check_rules(promtool: str) -> None:
    result = _run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    result = _run([promtool, "test", "rules", RULE_TESTS.name], cwd=PROM_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests_can_fail(promtool: str, tmp_path: Path) -> None:
    """A wrong expectation (the alert on another instance) must make promtool fail: the tests have teeth."""
    shutil.copy(RULES, tmp_path / RULES.name)
    tests = _load_yaml(RULE_TESTS)
    case = next(c for t in tests["tests"] for c in t.get("alert_rule_test", []) if c.get("exp_alerts"))
    case["exp_alerts"][0]["exp_labels"]["instance"] = "no-such-instance:9108"
    (tmp_path / RULE_TESTS.name).write_text(yaml.safe_dump(tests, sort_keys=False), encoding="utf-8")
    result = _run([promtool, "test", "rules", RULE_TESTS.name], cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert case["alertname"] in result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases = [c for t in _load_yaml(RULE_TESTS)["tests"] for c in t.get("alert_rule_test", [])]
    for alert in _alerts():
        name = alert["alert"]
        ours = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in ours), f"{name}: no case where it fires"
        assert any(not c.get("exp_alerts") for c in ours), f"{name}: no case where it stays quiet"


def test_alerts_carry_for_severity_annotations_and_a_runbook_that_exists() -> None:
    anchors = _github_anchors(OPERATIONS.read_text(encoding="utf-8"))
    alerts = _alerts()
    assert len(alerts) >= 8
    for alert in alerts:
        name = alert["alert"]
        assert re.fullmatch(r"Faultcast[A-Z]\w+", name)
        assert _seconds(alert.get("for", "0s")) > 0, f"{name}: needs for:"
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        annotations = alert["annotations"]
        assert annotations.get("summary") and annotations.get("description"), name
        url = annotations["runbook_url"]
        page, _, anchor = url.partition("#")
        assert page == "docs/operations.md", url
        assert anchor == name.lower() and anchor in anchors, f"{name}: {url} has no heading in {OPERATIONS}"


def test_recording_rules_used_are_defined() -> None:
    rules = _rules()
    defined = {r["record"] for r in rules if "record" in r}
    exprs = [r["expr"] for r in rules] + [e for _, e in _panel_exprs(_dashboard())]
    used = {name for expr in exprs for name in RECORDING_NAME.findall(expr)}
    assert used <= defined, f"undefined recording rules: {sorted(used - defined)}"


# --- metric names against the daemon's exposition ---------------------------------------------------------


def test_rules_and_dashboard_name_only_metrics_the_daemon_exports() -> None:
    exported, _ = _exported_metrics()
    dashboard = _dashboard()
    sources = {f"rule {r.get('alert') or r.get('record')}": r["expr"] for r in _rules()}
    sources.update({f"panel {title!r}": expr for title, expr in _panel_exprs(dashboard)})
    sources.update({f"variable query {q!r}": q for q in _variable_queries(dashboard)})
    used: set[str] = set()
    for source, expr in sources.items():
        names = set(METRIC_NAME.findall(expr))
        assert names <= exported, f"{source} uses metrics not exported: {sorted(names - exported)}"
        used |= names
    # the regex must actually find things, or the subset check proves nothing
    assert {
        "faultcast_ready",
        "faultcast_records_rejected_total",
        "faultcast_consumer_lag_records",
        "faultcast_end_to_end_latency_seconds_bucket",
        "faultcast_last_loop_timestamp_seconds",
        "faultcast_build_info",
        "faultcast_model_info",
    } <= used


def test_operations_guide_documents_every_metric() -> None:
    _, families = _exported_metrics()
    guide = OPERATIONS.read_text(encoding="utf-8")
    for family in families:
        name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        assert f"`{name}`" in guide, f"{name} missing from the metrics reference in {OPERATIONS.name}"


# --- the dashboard, statically ----------------------------------------------------------------------------


def _overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def test_dashboard_structure() -> None:
    dashboard = _dashboard()
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] == "faultcast"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["type"] == "query"
    assert variables["instance"]["datasource"]["uid"] == "${datasource}"

    all_panels = dashboard["panels"] + [p for r in dashboard["panels"] for p in r.get("panels", [])]
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    positions = [p["gridPos"] for p in dashboard["panels"]]
    for i, pos in enumerate(positions):
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, pos
        for other in positions[i + 1 :]:
            assert not _overlaps(pos, other), f"panels overlap: {pos} {other}"
    for panel in _panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        targets = panel["targets"]
        assert targets and all(t.get("expr") for t in targets), panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert 'instance=~"$instance"' in target["expr"], f"{panel['title']}: ignores $instance"

    exprs = " ".join(e for _, e in _panel_exprs(dashboard))
    for needed in (
        "faultcast_records_consumed_total",
        "faultcast_readings_scored_total",
        "faultcast_records_rejected_total",
        "faultcast_end_to_end_latency_seconds_bucket",
        "faultcast_inference_batch_size_bucket",
        "faultcast_inference_duration_seconds_bucket",
        "faultcast_alerts_total",
        "faultcast_alerts_firing",
        "faultcast_active_streams",
        "faultcast_state_bytes",
        "faultcast_consumer_lag_records",
        "faultcast_ready",
        "faultcast_build_info",
        "faultcast_model_info",
    ):
        assert needed in exprs, f"no panel shows {needed}"


# --- a real Prometheus scraping a Metrics registry --------------------------------------------------------


@dataclass(frozen=True)
class Server:
    url: str
    target: str
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            return json.loads(response.read())

    def log_tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


def _poll(what: str, check: Callable[[], Any], server: Server | None = None) -> Any:
    """Calls ``check`` until it returns something truthy, for at most WAIT_S seconds."""
    deadline = time.monotonic() + WAIT_S
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    tail = f"\nprometheus log:\n{server.log_tail()}" if server else ""
    pytest.fail(f"timed out after {WAIT_S:.0f}s waiting for {what}; last: {last!r}{tail}")


def _populated_metrics() -> CollectorRegistry:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.consumed.inc(100)
    m.rejected.labels("malformed_json").inc(3)
    m.dropped.labels("out_of_order").inc()
    m.unknown_channels.inc(2)
    m.carried.inc()
    m.scored.labels("press").inc(96)
    m.faster.labels("press").inc(2)
    m.batch_size.labels("press").observe(32)
    m.step_seconds.labels("press").observe(0.004)
    m.latency.observe(0.2)
    m.alerts.labels("fault", "critical", "firing").inc()
    m.alerts_firing.labels("press", "fault").set(1)
    m.active_streams.labels("press").set(12)
    m.state_bytes.labels("cpu").set(4096)
    m.stream_resets.labels("gap").inc()
    m.evicted.inc()
    m.lag.labels("faultcast.readings", "0").set(5)
    m.commits.inc()
    m.ready.set(1)
    m.last_wave.set(time.time())
    m.model_info.labels("press").info({"version": "3"})
    return registry


@pytest.fixture(scope="module")
def prometheus(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Prometheus with deploy/'s faultcast job and rules, scraping a live Metrics registry every second."""
    exporter, exporter_thread = start_http_server(0, addr="127.0.0.1", registry=_populated_metrics())
    target = f"127.0.0.1:{exporter.server_address[1]}"
    tmp = tmp_path_factory.mktemp("prometheus")
    config = _load_yaml(PROM_CONFIG)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s", scrape_timeout="1s")
    config["rule_files"] = [str(RULES)]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "faultcast")
    job.pop("scrape_interval", None)
    job.pop("scrape_timeout", None)
    job.pop("file_sd_configs", None)
    job["static_configs"] = [{"targets": [target]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")

    port = free_port()
    log = tmp / "prometheus.log"
    with log.open("w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", target, log)
    try:

        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited with {proc.returncode}:\n{server.log_tail()}"
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=5) as response:
                return bool(response.status == 200)

        _poll("prometheus to be ready", ready, server)
        yield server
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"prometheus did not exit within {WAIT_S:.0f}s of SIGTERM:\n{server.log_tail()}")
        finally:
            exporter.shutdown()
            exporter.server_close()
            exporter_thread.join(timeout=10)
        assert code == 0, f"prometheus exited with {code}:\n{server.log_tail()}"


def _query(server: Server, expr: str) -> list[dict[str, Any]]:
    body = server.get("/api/v1/query", query=expr)
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _scraped(server: Server, samples: int) -> bool:
    result = _query(server, f'count_over_time(up{{job="faultcast", instance="{server.target}"}}[1m])')
    return bool(result) and float(result[0]["value"][1]) >= samples


def test_target_is_up(prometheus: Server) -> None:
    def target_health() -> str | None:
        targets = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
        ours = [t for t in targets if t["labels"].get("instance") == prometheus.target]
        return ours[0]["health"] if ours and ours[0]["health"] != "unknown" else None

    assert _poll("the scrape target's first scrape", target_health, prometheus) == "up"
    assert _poll("up == 1", lambda: _query(prometheus, 'up{job="faultcast"} == 1'), prometheus)
    ready = _poll("faultcast_ready to be scraped", lambda: _query(prometheus, "faultcast_ready"), prometheus)
    assert ready[0]["metric"]["job"] == "faultcast" and ready[0]["value"][1] == "1"


def test_rule_groups_load_and_evaluate_without_errors(prometheus: Server) -> None:
    expected = {g["name"]: len(g["rules"]) for g in _load_yaml(RULES)["groups"]}

    def evaluated() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = prometheus.get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return groups if rules and all(r["health"] != "unknown" for r in rules) else None

    groups = _poll("every rule to be evaluated", evaluated, prometheus)
    assert {g["name"]: len(g["rules"]) for g in groups} == expected
    for group in groups:
        for rule in group["rules"]:
            assert rule["health"] == "ok", f"{group['name']}/{rule['name']}: {rule.get('lastError')}"


def test_every_dashboard_query_runs_and_returns_data(prometheus: Server) -> None:
    _poll("three scrapes, so that rates have samples", lambda: _scraped(prometheus, 3), prometheus)
    values = {
        "job": "faultcast",
        "instance": prometheus.target,
        "datasource": "prometheus",
        "__rate_interval": "1m",
        "__interval": "15s",
        "__range": "1h",
    }
    dashboard = _dashboard()
    exprs = _panel_exprs(dashboard)
    assert len(exprs) >= 20
    for title, expr in exprs:
        concrete = _substitute(expr, values)
        assert "$" not in concrete, concrete
        assert _query(prometheus, concrete), f"panel {title!r} returns no data: {concrete}"

    for query in _variable_queries(dashboard):
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", _substitute(query, values))
        assert match, f"variable query {query!r} is not label_values(selector, label)"
        body = prometheus.get(f"/api/v1/label/{match.group(2)}/values", **{"match[]": match.group(1)})
        assert body["status"] == "success" and body["data"], f"{query}: {body}"
    assert (
        prometheus.target
        in prometheus.get("/api/v1/label/instance/values", **{"match[]": "faultcast_build_info"})["data"]
    )
