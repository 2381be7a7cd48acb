"""docker-compose.yml, otel-collector.yaml and deploy/ must agree with one another.

No Docker engine runs where the tests run, so the stack is checked statically: each
config is parsed (the files actually mounted into each container, found through the
compose volumes and command lines) and cross-checked — ports, service names, pipeline
wiring, data-source URLs, the replay mount, pinned images, the dashboard.

Every check is a function of a parsed :class:`Stack`; ``test_check_catches_drift`` feeds
each one a deliberately drifted copy and requires it to fail.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable
from urllib.parse import urlsplit

import pytest

import yaml  # in the test extras: a missing one fails, never skips

ROOT = Path(__file__).resolve().parents[1]

# The OTLP instruments the workers export, as the collector's Prometheus exporter names
# them (dots -> "_", unit "s" -> "_seconds", monotonic sum -> "_total"; unit "1" on a
# counter adds nothing). The dashboard must use exactly these.
EXPECTED_METRICS = {
    "spanbench_queries_total": {"query_kind", "worker_id", "run_id"},
    "spanbench_errors_total": {"query_kind", "worker_id", "run_id"},
    "spanbench_query_duration_seconds": {"query_kind", "worker_id"},
    "spanbench_active_connections": {"worker_id"},
    "spanbench_phase": {"worker_id"},
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# --------------------------------------------------------------------------- loading


def _interpolate(value: str) -> str:
    """Compose-style ${VAR:-default} / ${VAR-default} / ${VAR}, using the defaults only."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "", value)


@dataclass
class Mount:
    source: str  # as written (after interpolation); a host path or a named volume
    target: str
    host_path: Path | None  # resolved bind-mount source, None for named volumes


@dataclass
class Stack:
    compose: dict[str, Any]
    collector: dict[str, Any]
    jaeger: dict[str, Any]
    tempo: dict[str, Any]
    prometheus: dict[str, Any]
    datasources: dict[str, Any]
    dashboard_providers: dict[str, Any]
    dashboard: dict[str, Any]

    # compose helpers ----------------------------------------------------------------
    @property
    def services(self) -> dict[str, Any]:
        return self.compose["services"]

    def service_by_image(self, fragment: str) -> tuple[str, dict[str, Any]]:
        found = [(n, s) for n, s in self.services.items()
                 if fragment in s.get("image", "") and s.get("entrypoint") is None]
        assert len(found) == 1, f"expected one running service with image *{fragment}*, got {found}"
        return found[0]

    def mounts(self, service: str) -> list[Mount]:
        out = []
        for vol in self.services[service].get("volumes", []):
            if isinstance(vol, dict):
                source, target = _interpolate(str(vol.get("source", ""))), vol["target"]
            else:
                parts = _interpolate(vol).split(":")
                source, target = parts[0], parts[1]
            bind = source.startswith((".", "/", "~"))
            out.append(Mount(source, target, (ROOT / source).resolve() if bind else None))
        return out

    def host_file(self, service: str, container_path: str) -> Path:
        """The host file that a container sees at container_path (through a bind mount)."""
        cpath = PurePosixPath(container_path)
        for m in self.mounts(service):
            tgt = PurePosixPath(m.target)
            if m.host_path is not None and (cpath == tgt or tgt in cpath.parents):
                return m.host_path / cpath.relative_to(tgt)
        raise AssertionError(f"{service}: nothing mounted at {container_path}")

    def published(self, service: str) -> dict[int, int]:
        """container port -> host port."""
        out = {}
        for p in self.services[service].get("ports", []):
            if isinstance(p, dict):
                out[int(p["target"])] = int(p.get("published", p["target"]))
                continue
            parts = str(p).split("/")[0].split(":")
            container = int(parts[-1])
            out[container] = int(parts[-2]) if len(parts) >= 2 else container
        return out


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def flag(service: dict[str, Any], *names: str) -> str | None:
    """Value of a --flag=value / -flag=value / --flag value option on the command line."""
    cmd = _command(service)
    for i, arg in enumerate(cmd):
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
            if arg == name and i + 1 < len(cmd):
                return cmd[i + 1]
    return None


def _load_yaml(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path} is mounted but does not exist"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_stack() -> Stack:
    compose = _load_yaml(ROOT / "docker-compose.yml")
    partial = Stack(compose, {}, {}, {}, {}, {}, {}, {})
    configs: dict[str, dict[str, Any]] = {}
    for key, image, flags in [
        ("collector", "opentelemetry-collector-contrib", ("--config",)),
        ("jaeger", "jaegertracing/jaeger", ("--config",)),
        ("tempo", "grafana/tempo", ("-config.file", "--config.file")),
        ("prometheus", "prom/prometheus", ("--config.file",)),
    ]:
        name, svc = partial.service_by_image(image)
        path = flag(svc, *flags)
        assert path, f"{name}: no {flags[0]} on its command line"
        configs[key] = _load_yaml(partial.host_file(name, path))

    gname, _ = partial.service_by_image("grafana/grafana")
    prov = partial.host_file(gname, "/etc/grafana/provisioning")
    ds_files = sorted((prov / "datasources").glob("*.y*ml"))
    assert len(ds_files) == 1, f"expected one datasource file, got {ds_files}"
    providers = _load_yaml(next(iter(sorted((prov / "dashboards").glob("*.y*ml")))))
    dash_dir = partial.host_file(gname, providers["providers"][0]["options"]["path"])
    dashboards = sorted(dash_dir.glob("*.json"))
    assert dashboards, f"no dashboard JSON in {dash_dir}"
    dashboard = json.loads(dashboards[0].read_text(encoding="utf-8"))
    return Stack(compose, configs["collector"], configs["jaeger"], configs["tempo"],
                 configs["prometheus"], _load_yaml(ds_files[0]), providers, dashboard)


@pytest.fixture(scope="module")
def stack() -> Stack:
    return load_stack()


def hostport(endpoint: str) -> tuple[str, int]:
    if "://" in endpoint:
        u = urlsplit(endpoint)
        return u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


def otlp_endpoints(otlp_receiver: dict[str, Any]) -> dict[str, str]:
    protocols = otlp_receiver["protocols"]
    return {proto: (cfg or {}).get("endpoint", "") for proto, cfg in protocols.items()}


# --------------------------------------------------------------------------- checks


def check_images_pinned(s: Stack) -> None:
    for name, svc in s.services.items():
        image = svc.get("image")
        assert image, f"{name}: no image"
        assert "@sha256:" in image or ":" in image.rsplit("/", 1)[-1], f"{name}: image {image} has no tag"
        tag = image.rsplit("/", 1)[-1].split(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert "$" not in image, f"{name}: image {image} is not a literal version"
        assert tag.lower() not in ("latest", "main", "master", "edge", "nightly"), f"{name}: {image} not pinned"
        assert re.search(r"\d", tag) or "@sha256:" in image, f"{name}: tag of {image} is not a version"
    _, jaeger = s.service_by_image("jaegertracing/jaeger")
    assert re.search(r":2\.\d+\.\d+$", jaeger["image"]), "Jaeger must be v2 (jaegertracing/jaeger:2.x.y)"
    _, tempo = s.service_by_image("grafana/tempo")
    assert re.search(r":2\.\d+\.\d+$", tempo["image"]), "Tempo pinned to a 2.x.y release"


def check_collector_ports(s: Stack) -> None:
    name, _ = s.service_by_image("opentelemetry-collector-contrib")
    published = s.published(name)
    eps = otlp_endpoints(s.collector["receivers"]["otlp"])
    assert set(eps) == {"grpc", "http"}
    for proto, standard in (("grpc", 4317), ("http", 4318)):
        host, port = hostport(eps[proto])
        assert host == "0.0.0.0", f"collector OTLP {proto} must bind 0.0.0.0, not {host!r}"
        assert port == standard, f"collector OTLP {proto} on {port}, users send to {standard}"
        assert published.get(port) == standard, f"collector port {port} not published as {standard}"
    health = s.collector.get("extensions", {}).get("health_check")
    if health and health.get("endpoint"):
        hport = hostport(health["endpoint"])[1]
        assert hport in published, f"health_check port {hport} not published"


def _components(section: dict[str, Any] | None) -> set[str]:
    return set((section or {}).keys())


def check_collector_pipelines(s: Stack) -> None:
    c = s.collector
    service = c["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    connectors = _components(c.get("connectors"))
    for pname, pipe in service["pipelines"].items():
        assert pipe.get("receivers"), f"pipeline {pname} has no receivers"
        assert pipe.get("exporters"), f"pipeline {pname} has no exporters"
        for kind in used:
            for comp in pipe.get(kind, []):
                defined = _components(c.get(kind)) | (connectors if kind != "processors" else set())
                assert comp in defined, f"pipeline {pname} uses undefined {kind[:-1]} {comp!r}"
                used[kind].add(comp)
    for kind, names in used.items():
        unused = _components(c.get(kind)) - names
        assert not unused, f"defined but unused {kind}: {sorted(unused)}"
    ext_defined, ext_used = _components(c.get("extensions")), set(service.get("extensions", []))
    assert ext_used <= ext_defined, f"undefined extensions: {sorted(ext_used - ext_defined)}"
    assert ext_defined <= ext_used, f"unused extensions: {sorted(ext_defined - ext_used)}"
    # the shape the stack promises
    pipes = service["pipelines"]
    traces = [p for n, p in pipes.items() if n.split("/")[0] == "traces"]
    metrics = [p for n, p in pipes.items() if n.split("/")[0] == "metrics"]
    assert traces and metrics, "need a traces and a metrics pipeline"
    assert any("otlp" in p["receivers"] and "batch" in p.get("processors", []) for p in traces)
    assert any(e.split("/")[0] == "prometheus" for p in metrics for e in p["exporters"])
    assert all("batch" in p.get("processors", []) for p in pipes.values()), "every pipeline batches"


def _trace_exporter_targets(s: Stack) -> dict[str, tuple[str, str, int]]:
    """exporter id -> (protocol, service host, port) for every OTLP exporter on a traces pipeline."""
    out = {}
    trace_exporters = {e for n, p in s.collector["service"]["pipelines"].items()
                       if n.split("/")[0] == "traces" for e in p["exporters"]}
    for exp_id in trace_exporters:
        kind = exp_id.split("/")[0]
        if kind not in ("otlp", "otlphttp"):
            continue
        cfg = s.collector["exporters"][exp_id]
        host, port = hostport(cfg["endpoint"])
        out[exp_id] = ("grpc" if kind == "otlp" else "http", host, port)
    return out


def check_trace_exporters_reach_backends(s: Stack) -> None:
    targets = _trace_exporter_targets(s)
    jaeger_name, _ = s.service_by_image("jaegertracing/jaeger")
    tempo_name, _ = s.service_by_image("grafana/tempo")
    listening = {
        jaeger_name: otlp_endpoints(s.jaeger["receivers"]["otlp"]),
        tempo_name: otlp_endpoints(s.tempo["distributor"]["receivers"]["otlp"]),
    }
    assert {h for _, h, _ in targets.values()} == set(listening), \
        f"trace exporters go to {sorted(h for _, h, _ in targets.values())}, expected Jaeger and Tempo"
    for exp_id, (proto, host, port) in targets.items():
        assert host in s.services, f"{exp_id}: {host!r} is not a compose service"
        assert proto in listening[host], f"{exp_id}: {host} has no OTLP {proto} receiver"
        lport = hostport(listening[host][proto])[1]
        assert port == lport, f"{exp_id} sends to {host}:{port}, {host} listens for OTLP {proto} on {lport}"
        cfg = s.collector["exporters"][exp_id]
        if "://" not in cfg["endpoint"] or cfg["endpoint"].startswith("http://"):
            assert cfg.get("tls", {}).get("insecure") is True or cfg["endpoint"].startswith("http://"), \
                f"{exp_id}: plaintext back end needs tls.insecure: true"
    # Jaeger really stores what its OTLP receiver gets
    jpipes = s.jaeger["service"]["pipelines"]
    assert any("otlp" in p["receivers"] and "jaeger_storage_exporter" in p["exporters"] for p in jpipes.values())
    storage = s.jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"]
    assert storage in s.jaeger["extensions"]["jaeger_storage"]["backends"]
    assert s.jaeger["extensions"]["jaeger_query"]["storage"]["traces"] == storage, \
        "the Jaeger UI queries a different storage than the one its pipeline writes"


def check_metrics_reach_prometheus(s: Stack) -> None:
    coll_name, _ = s.service_by_image("opentelemetry-collector-contrib")
    prom_name, prom = s.service_by_image("prom/prometheus")
    exporters = [e for n, p in s.collector["service"]["pipelines"].items() if n.split("/")[0] == "metrics"
                 for e in p["exporters"] if e.split("/")[0] == "prometheus"]
    scraped = {hostport(t) for job in s.prometheus.get("scrape_configs", [])
               for sc in job.get("static_configs", []) for t in sc.get("targets", [])}
    for exp_id in exporters:
        host, port = hostport(s.collector["exporters"][exp_id]["endpoint"])
        assert host == "0.0.0.0", f"{exp_id} must bind 0.0.0.0 to be scraped from another container"
        assert (coll_name, port) in scraped, \
            f"Prometheus does not scrape {coll_name}:{port} ({exp_id}); it scrapes {sorted(scraped)}"
    # Tempo's span metrics are remote-written into Prometheus
    listen = flag(prom, "--web.listen-address") or ":9090"
    prom_port = hostport(listen)[1]
    for rw in s.tempo.get("metrics_generator", {}).get("storage", {}).get("remote_write", []):
        u = urlsplit(rw["url"])
        assert (u.hostname, u.port) == (prom_name, prom_port), f"Tempo remote-writes to {rw['url']}"
        assert u.path == "/api/v1/write"
        assert "--web.enable-remote-write-receiver" in _command(prom), "Prometheus rejects remote write"
    assert "--enable-feature=exemplar-storage" in _command(prom), "exemplars need exemplar-storage"


def check_tempo_binds_all_interfaces(s: Stack) -> None:
    server = s.tempo.get("server", {})
    assert server.get("http_listen_address") == "0.0.0.0"
    assert server.get("grpc_listen_address") == "0.0.0.0"

    def endpoints(node: Any, path: str = "") -> list[tuple[str, str]]:
        if isinstance(node, dict):
            found = [(f"{path}.endpoint", node["endpoint"])] if "endpoint" in node else []
            for k, v in node.items():
                found += endpoints(v, f"{path}.{k}")
            return found
        return []

    found = endpoints(s.tempo["distributor"]["receivers"], "distributor.receivers")
    assert found, "Tempo receivers need explicit endpoints (2.7+ default to localhost)"
    for where, ep in found:
        assert hostport(ep)[0] == "0.0.0.0", f"Tempo {where} = {ep}: binds localhost-only or a name"
    for proto, cfg in s.tempo["distributor"]["receivers"]["otlp"]["protocols"].items():
        assert cfg and cfg.get("endpoint"), f"Tempo OTLP {proto} has no explicit endpoint"


def _listen_port(s: Stack, service: str) -> int:
    """The HTTP port Grafana must use for a service's API."""
    image = s.services[service]["image"]
    if "prom/prometheus" in image:
        return hostport(flag(s.services[service], "--web.listen-address") or ":9090")[1]
    if "grafana/tempo" in image:
        return int(s.tempo["server"]["http_listen_port"])
    if "jaegertracing/jaeger" in image:
        http = s.jaeger["extensions"]["jaeger_query"].get("http") or {}
        return hostport(http.get("endpoint", ":16686"))[1]
    raise AssertionError(f"no known API port for {service} ({image})")


def check_grafana_datasources(s: Stack) -> None:
    expected_image = {"prometheus": "prom/prometheus", "tempo": "grafana/tempo", "jaeger": "jaegertracing/jaeger"}
    sources = s.datasources["datasources"]
    by_type = {d["type"]: d for d in sources}
    assert set(by_type) == set(expected_image), f"data sources {sorted(by_type)}"
    uids = [d.get("uid") for d in sources]
    assert all(uids) and len(set(uids)) == len(uids), f"data sources need unique explicit uids: {uids}"
    for dtype, ds in by_type.items():
        u = urlsplit(ds["url"])
        assert u.hostname in s.services, f"{ds['name']}: {u.hostname!r} is not a compose service"
        assert expected_image[dtype] in s.services[u.hostname]["image"], \
            f"{ds['name']} ({dtype}) points at {u.hostname}, which runs {s.services[u.hostname]['image']}"
        port = u.port or 80
        assert port == _listen_port(s, u.hostname), f"{ds['name']}: {ds['url']} is not where {u.hostname} listens"

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "datasourceUid"] + [x for v in node.values() for x in refs(v)]
        if isinstance(node, list):
            return [x for v in node for x in refs(v)]
        return []

    for ds in sources:
        for ref in refs(ds.get("jsonData", {})):
            assert ref in uids, f"{ds['name']} links to unknown data source uid {ref!r}"
    prom_uid = by_type["prometheus"]["uid"]
    for dtype in ("tempo", "jaeger"):
        t2m = by_type[dtype].get("jsonData", {}).get("tracesToMetrics", {})
        assert t2m.get("datasourceUid") == prom_uid, f"{dtype}: trace-to-metrics must link to Prometheus"
        assert t2m.get("queries"), f"{dtype}: trace-to-metrics has no queries"
        for q in t2m["queries"]:
            # Grafana expands $VAR in provisioning files: Grafana's own macros need $$
            assert not re.search(r"(?<!\$)\$__", q["query"]), f"{dtype}: write $$__ in {q['query']!r}"


def check_replay_mount(s: Stack) -> None:
    name, _ = s.service_by_image("opentelemetry-collector-contrib")
    receivers = [r for r in s.collector["receivers"] if r.split("/")[0] == "otlpjsonfile"]
    assert receivers, "no otlpjsonfile receiver"
    mounts = s.mounts(name)
    for rid in receivers:
        cfg = s.collector["receivers"][rid]
        assert cfg.get("start_at") == "beginning", f"{rid}: saved files must be read from the beginning"
        for pattern in cfg["include"]:
            under = [m for m in mounts if pattern.startswith(m.target.rstrip("/") + "/")]
            assert under, f"{rid} reads {pattern}, but nothing is mounted there in {name}"
            assert all(m.host_path is not None and not m.host_path.is_file() for m in under), \
                f"{pattern}: the replay mount must be a host folder"
            assert fnmatch.fnmatch(under[0].target + "/run-1/trace-orchestrator.jsonl", pattern.replace("**/", "*/")), \
                f"{pattern} does not match a run folder's trace file"
        # replayed runs go to both back ends
        targets = _trace_exporter_targets(s)
        for pname, pipe in s.collector["service"]["pipelines"].items():
            if rid in pipe["receivers"]:
                hosts = {targets[e][1] for e in pipe["exporters"] if e in targets}
                assert hosts == {s.service_by_image("jaegertracing/jaeger")[0],
                                 s.service_by_image("grafana/tempo")[0]}, f"{pname} replays only to {hosts}"
                break
        else:
            raise AssertionError(f"{rid} is on no pipeline")


def check_mounted_files_exist(s: Stack) -> None:
    for name in s.services:
        for m in s.mounts(name):
            if m.host_path is None:
                assert m.source in (s.compose.get("volumes") or {}), f"{name}: undeclared volume {m.source}"
            elif "replay" not in m.target:  # the replay folder may not exist yet
                assert m.host_path.exists(), f"{name}: mounts missing {m.source}"


def _exprs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in ("expr", "query", "definition") and isinstance(v, str)]
        return found + [x for v in node.values() for x in _exprs(v)]
    if isinstance(node, list):
        return [x for v in node for x in _exprs(v)]
    return []


def check_dashboard(s: Stack) -> None:
    d = s.dashboard
    prom_uid = next(ds["uid"] for ds in s.datasources["datasources"] if ds["type"] == "prometheus")
    panels = d["panels"]
    assert panels, "dashboard has no panels"

    def uid_of(ds: Any) -> str | None:
        return ds.get("uid") if isinstance(ds, dict) else ds

    for p in panels:
        assert uid_of(p.get("datasource")) == prom_uid, f"panel {p['title']!r} uses {p.get('datasource')}"
        assert p.get("targets"), f"panel {p['title']!r} has no queries"
        for t in p["targets"]:
            assert uid_of(t.get("datasource", p["datasource"])) == prom_uid, f"{p['title']!r}: target datasource"
    for var in d.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            assert uid_of(var["datasource"]) == prom_uid, f"variable {var['name']} datasource"
    for ann in d.get("annotations", {}).get("list", []):
        if not ann.get("builtIn"):
            assert uid_of(ann["datasource"]) == prom_uid, f"annotation {ann['name']} datasource"

    used = set()
    for expr in _exprs(d):
        for metric in re.findall(r"\b(spanbench_[a-z_]+)", expr):
            base = metric
            for suffix in HISTOGRAM_SUFFIXES:
                if metric.endswith(suffix) and metric[: -len(suffix)] in EXPECTED_METRICS:
                    base = metric[: -len(suffix)]
            assert base in EXPECTED_METRICS, f"dashboard uses unknown metric {metric}"
            used.add(base)
        for metric, labels in re.findall(r"\b(spanbench_[a-z_]+)\{([^}]*)\}", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", metric) if metric not in EXPECTED_METRICS else metric
            for label in re.findall(r"([a-z_]+)\s*=~?", labels):
                assert label in EXPECTED_METRICS[base], f"{metric} has no label {label} (in {expr!r})"
    assert used == set(EXPECTED_METRICS), f"dashboard does not show {sorted(set(EXPECTED_METRICS) - used)}"
    titles = " ".join(p["title"].lower() for p in panels)
    for word in ("qps", "latency", "connections", "errors", "phase"):
        assert word in titles, f"no {word} panel"
    assert any(not a.get("builtIn") and "spanbench_phase" in a.get("expr", "")
               for a in d.get("annotations", {}).get("list", [])), "no phase markers"


CHECKS: list[Callable[[Stack], None]] = [
    check_images_pinned,
    check_collector_ports,
    check_collector_pipelines,
    check_trace_exporters_reach_backends,
    check_metrics_reach_prometheus,
    check_tempo_binds_all_interfaces,
    check_grafana_datasources,
    check_replay_mount,
    check_mounted_files_exist,
    check_dashboard,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_configs_agree(stack: Stack, check: Callable[[Stack], None]) -> None:
    check(stack)


def test_dashboard_and_docs_name_the_same_metrics() -> None:
    doc = ROOT / "README.md"
    text = doc.read_text(encoding="utf-8")
    for metric in EXPECTED_METRICS:
        assert metric in text, f"{doc.name} does not document {metric}"


# --------------------------------------------------------------------------- drift


def _svc(s: Stack, image: str) -> dict[str, Any]:
    return s.service_by_image(image)[1]


def _set_ports(s: Stack, image: str, ports: list[str]) -> None:
    _svc(s, image)["ports"] = ports


DRIFTS: list[tuple[str, Callable[[Stack], None], Callable[[Stack], None]]] = [
    ("image latest", check_images_pinned,
     lambda s: _svc(s, "grafana/grafana").update(image="grafana/grafana:latest")),
    ("image without tag", check_images_pinned,
     lambda s: _svc(s, "prom/prometheus").update(image="prom/prometheus")),
    ("jaeger v1", check_images_pinned,
     lambda s: _svc(s, "jaegertracing/jaeger").update(image="jaegertracing/jaeger:1.76.0")),
    ("grpc port not published", check_collector_ports,
     lambda s: _set_ports(s, "opentelemetry-collector-contrib", ["4318:4318", "13133:13133"])),
    ("grpc published elsewhere", check_collector_ports,
     lambda s: _set_ports(s, "opentelemetry-collector-contrib", ["14317:4317", "4318:4318", "13133:13133"])),
    ("receiver moved port", check_collector_ports,
     lambda s: s.collector["receivers"]["otlp"]["protocols"]["http"].update(endpoint="0.0.0.0:4319")),
    ("receiver on localhost", check_collector_ports,
     lambda s: s.collector["receivers"]["otlp"]["protocols"]["grpc"].update(endpoint="localhost:4317")),
    ("pipeline names undefined exporter", check_collector_pipelines,
     lambda s: s.collector["service"]["pipelines"]["traces"]["exporters"].append("otlp/zipkin")),
    ("exporter defined, unused", check_collector_pipelines,
     lambda s: s.collector["exporters"].update({"debug": {}})),
    ("processor undefined", check_collector_pipelines,
     lambda s: s.collector["service"]["pipelines"]["metrics"]["processors"].append("memory_limiter")),
    ("extension unused", check_collector_pipelines,
     lambda s: s.collector["service"].update(extensions=[])),
    ("exporter to unknown service", check_trace_exporters_reach_backends,
     lambda s: s.collector["exporters"]["otlp/tempo"].update(endpoint="tempo-db:4317")),
    ("exporter to wrong port", check_trace_exporters_reach_backends,
     lambda s: s.collector["exporters"]["otlp/jaeger"].update(endpoint="jaeger:14250")),
    ("tempo otlp moved", check_trace_exporters_reach_backends,
     lambda s: s.tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"].update(endpoint="0.0.0.0:4417")),
    ("jaeger storage renamed", check_trace_exporters_reach_backends,
     lambda s: s.jaeger["extensions"]["jaeger_query"]["storage"].update(traces="other")),
    ("prometheus scrapes wrong port", check_metrics_reach_prometheus,
     lambda s: s.prometheus["scrape_configs"][0]["static_configs"][0].update(targets=["collector:9464"])),
    ("remote write receiver off", check_metrics_reach_prometheus,
     lambda s: _svc(s, "prom/prometheus").update(command=[c for c in _command(_svc(s, "prom/prometheus"))
                                                          if "remote-write" not in c])),
    ("tempo binds localhost", check_tempo_binds_all_interfaces,
     lambda s: s.tempo["distributor"]["receivers"]["otlp"]["protocols"]["http"].update(endpoint="localhost:4318")),
    ("tempo default endpoint", check_tempo_binds_all_interfaces,
     lambda s: s.tempo["distributor"]["receivers"]["otlp"]["protocols"].update(grpc=None)),
    ("datasource wrong port", check_grafana_datasources,
     lambda s: next(d for d in s.datasources["datasources"] if d["type"] == "tempo").update(url="http://tempo:3100")),
    ("datasource wrong host", check_grafana_datasources,
     lambda s: next(d for d in s.datasources["datasources"] if d["type"] == "jaeger").update(url="http://localhost:16686")),
    ("datasource points at other service", check_grafana_datasources,
     lambda s: next(d for d in s.datasources["datasources"] if d["type"] == "prometheus").update(url="http://tempo:3200")),
    ("trace-to-metrics unknown uid", check_grafana_datasources,
     lambda s: next(d for d in s.datasources["datasources"] if d["type"] == "tempo")["jsonData"]["tracesToMetrics"]
     .update(datasourceUid="mimir")),
    ("replay not mounted", check_replay_mount,
     lambda s: _svc(s, "opentelemetry-collector-contrib").update(
         volumes=[v for v in _svc(s, "opentelemetry-collector-contrib")["volumes"] if "/replay" not in v])),
    ("replay reads elsewhere", check_replay_mount,
     lambda s: s.collector["receivers"]["otlpjsonfile"].update(include=["/data/**/trace*.jsonl"])),
    ("replay only to jaeger", check_replay_mount,
     lambda s: s.collector["service"]["pipelines"]["traces"].update(exporters=["otlp/jaeger"])),
    ("panel on other datasource", check_dashboard,
     lambda s: s.dashboard["panels"][0].update(datasource={"type": "prometheus", "uid": "mimir"})),
    ("panel uses OTLP-style name", check_dashboard,
     lambda s: s.dashboard["panels"][0]["targets"][0].update(expr="sum(rate(spanbench_queries[1m]))")),
    ("histogram filtered by missing label", check_dashboard,
     lambda s: s.dashboard["panels"][1]["targets"][0].update(
         expr='histogram_quantile(0.99, sum by (le) (rate(spanbench_query_duration_seconds_bucket{run_id="x"}[1m])))')),
]


@pytest.mark.parametrize("check,drift", [(c, d) for _, c, d in DRIFTS], ids=[n for n, _, _ in DRIFTS])
def test_check_catches_drift(stack: Stack, check: Callable[[Stack], None], drift: Callable[[Stack], None]) -> None:
    drifted = copy.deepcopy(stack)
    drift(drifted)
    with pytest.raises(AssertionError):
        check(drifted)
