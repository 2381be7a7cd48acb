"""report.html, rendered in a real headless Chromium: the DOM after load, the layout, a screenshot.

Chromium is part of the test environment (.ci/run installs Debian's ``chromium``): when
it is missing these tests fail, they do not skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from conftest import run_cli, spanbench_env
from spanbench.analysis.analyze import analyze
from spanbench.analysis.load import load_trace
from support.synthetic import spanbench_run, to_otlp
from spanbench.errors import ConfigError
from spanbench.report.html import write_html_report

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

# Runs after the page's own script: records where the browser actually laid things out.
PROBE = """<script>
(function(){
  function mark(sel){
    var els=document.querySelectorAll(sel);
    for(var i=0;i<els.length;i++){
      var r=els[i].getBoundingClientRect();
      els[i].setAttribute('data-x',r.left.toFixed(2));
      els[i].setAttribute('data-w',r.width.toFixed(2));
      els[i].setAttribute('data-y',r.top.toFixed(2));
      els[i].setAttribute('data-h',r.height.toFixed(2));
    }
  }
  mark('.bar');mark('.gap');mark('.gap-label');mark('.track');mark('svg.throughput');mark('circle.point');
  document.documentElement.setAttribute('data-probe','1');
})();
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        pytest.fail("chromium is not installed: apt-get install -y --no-install-recommends chromium")
    return path


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def dump_dom(page: Path, tmp: Path) -> str:
    """The DOM after load, with the layout probe's measurements on the elements."""
    probe = tmp / f"probe-{page.stem}-{uuid.uuid4().hex[:6]}.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(["--window-size=1400,2000", "--dump-dom", probe.as_uri()], tmp / "chromium-profile").stdout
    assert 'data-probe="1"' in dom, "the page's scripts did not run"
    return dom


def screenshot(page: Path, name: str, tmp: Path, url_suffix: str = "") -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    out.unlink(missing_ok=True)
    _chromium([f"--screenshot={out}", "--window-size=1400,2000", "--hide-scrollbars", page.as_uri() + url_suffix],
              tmp / "chromium-profile")
    assert out.exists() and out.stat().st_size > 20_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return out


class Elements(HTMLParser):
    """Every element as (tag, attrs, text directly inside), in document order."""

    def __init__(self, dom: str) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[dict] = []
        self._open: list[dict] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, **{k: (v or "") for k, v in attrs}, "_text": ""}
        self.items.append(el)
        if tag not in ("br", "img", "input", "meta", "link", "line", "circle", "polyline", "path"):
            self._open.append(el)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        if self._open:
            self._open[-1]["_text"] += data

    def cls(self, name: str) -> list[dict]:
        return [e for e in self.items if name in e.get("class", "").split()]

    def root(self) -> dict:
        return next(e for e in self.items if e["tag"] == "html")


def visible(el: dict) -> bool:
    return float(el.get("data-w", 0)) > 0 or float(el.get("data-h", 0)) > 0


def _with_password(dsn: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    user = parts.netloc.rpartition("@")[0].partition(":")[0] if "@" in parts.netloc else "postgres"
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}", parts.path, parts.query, parts.fragment))


SECRET = "pw-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def traced_run(pg_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2-worker run with tracing on, its DSN carrying a password (trust auth ignores it)."""
    out = tmp_path_factory.mktemp("html-runs")
    res = run_cli(
        ["run", "--target-dsn", _with_password(pg_dsn, SECRET), "--workers", "2", "--connections", "4",
         "--pool-batch-size", "2", "--warmup", "0.5s", "--duration", "2s"],
        output=out, env=spanbench_env(SPANBENCH_TRACING="1"),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    return res.run_dir()


@pytest.fixture(scope="module")
def traced_report(traced_run: Path) -> Path:
    return write_html_report(traced_run)


@pytest.fixture(scope="module")
def traced_dom(traced_report: Path, tmp_path_factory: pytest.TempPathFactory) -> Elements:
    return Elements(dump_dom(traced_report, tmp_path_factory.mktemp("dom")))


def test_real_run_bars_are_drawn_in_time_order(traced_dom: Elements, traced_run: Path) -> None:
    dom = traced_dom
    assert dom.root().get("data-ready") == "1"
    bars = dom.cls("bar")
    names = {b["data-span-name"] for b in bars}
    assert {"run", "worker", "pool.init", "pool.connect", "executor.setup", "wait_for_start", "first_query"} <= names
    # every span of the trace is a bar (collapsed repeats are member bars of one row)
    assert len(bars) == len(load_trace(traced_run))

    shown = [b for b in bars if visible(b)]
    assert len(shown) >= 20
    tracks = [t for t in dom.cls("track") if visible(t)]
    left, right = min(float(t["data-x"]) for t in tracks), max(float(t["data-x"]) + float(t["data-w"]) for t in tracks)
    # the root starts at the axis' origin; every visible bar lies on the axis
    run = next(b for b in shown if b["data-span-name"] == "run")
    assert abs(float(run["data-x"]) - left) < 1.0
    for b in shown:
        assert left - 0.5 <= float(b["data-x"]) <= right + 0.5, b
        assert float(b["data-w"]) >= 1.0, b  # short spans stay visible
    # x grows with the start time, across all rows
    by_time = sorted(shown, key=lambda b: float(b["data-start-ms"]))
    xs = [float(b["data-x"]) for b in by_time]
    assert all(b >= a - 1.0 for a, b in zip(xs, xs[1:])), "bars not in time order on the axis"
    # the scale is linear: x ∝ start
    first, last = by_time[0], by_time[-1]
    px_per_ms = (float(last["data-x"]) - float(first["data-x"])) / (float(last["data-start-ms"]) - float(first["data-start-ms"]))
    for b in shown:
        expect = float(first["data-x"]) + px_per_ms * (float(b["data-start-ms"]) - float(first["data-start-ms"]))
        assert abs(float(b["data-x"]) - expect) < 2.0, b

    # siblings (rows with one parent) in time order, in document order
    rows = [e for e in dom.cls("wf-row") if "data-parent-id" in e]
    seen: dict[str, float] = {}
    for row in rows:
        start = float(row["data-start-ms"])
        assert start >= seen.get(row["data-parent-id"], -1.0), row
        seen[row["data-parent-id"]] = start
    # worker groups: each worker's rows carry its id, one colour per process
    workers = {r.get("data-worker") for r in rows if r.get("data-worker")}
    assert workers == {"w0", "w1"}
    assert len({e["data-process"] for e in dom.cls("proc")}) == 3


def test_real_run_gap_labels_are_drawn_in_time_order(traced_run: Path, tmp_path: Path) -> None:
    # a real healthy run may have no gap ≥ 50 ms: look at the 1 ms ones
    analysis = analyze(load_trace(traced_run), min_gap_s=0.001)
    page = tmp_path / "fine" / "report.html"
    page.parent.mkdir()
    for f in traced_run.iterdir():
        shutil.copy(f, page.parent / f.name)
    write_html_report(page.parent, analysis=analysis)
    dom = Elements(dump_dom(page, tmp_path))
    labels = dom.cls("gap-label")
    assert labels, "no gap label drawn"
    for label in labels:
        ms = float(label["data-gap-ms"])
        assert ms >= 1.0
        assert label["_text"].strip()  # the duration, written out
    shown = [lab for lab in labels if visible(lab)]
    assert shown
    gaps = [g for g in dom.cls("gap") if visible(g)]
    assert len(dom.cls("gap")) == len(labels)
    by_time = sorted(gaps, key=lambda g: float(g["data-start-ms"]))
    xs = [float(g["data-x"]) for g in by_time]
    assert all(b >= a - 1.0 for a, b in zip(xs, xs[1:])), "gaps not in time order on the axis"
    # the list of gaps below the waterfall is in time order too
    items = [float(i["data-start-ms"]) for i in dom.cls("gap-item")]
    assert items and items == sorted(items)


def test_real_run_latency_table_and_throughput_chart(traced_dom: Elements, traced_run: Path) -> None:
    results = json.loads((traced_run / "results.json").read_text())
    dom = traced_dom
    table_kinds = {e["data-kind"] for e in dom.items if e["tag"] == "tr" and e.get("data-kind")}
    assert set(results["measurement"]["latency"]) | {"all"} <= table_kinds
    assert {"point_select", "update", "all"} <= table_kinds

    points = dom.cls("point")
    assert len(points) == len(results["timeline"]) >= 2
    svg = next(e for e in dom.items if e["tag"] == "svg" and "throughput" in e.get("class", ""))
    x0, w, y0, h = (float(svg[k]) for k in ("data-x", "data-w", "data-y", "data-h"))
    assert w > 300 and h > 100
    for p in points:
        assert x0 <= float(p["data-x"]) <= x0 + w and y0 <= float(p["data-y"]) <= y0 + h
    ts = [float(p["data-t-s"]) for p in points]
    assert ts == sorted(ts)
    xs = [float(p["data-x"]) for p in points]
    assert xs == sorted(xs)
    assert any(float(p["data-qps"]) > 0 for p in points)

    settings_keys = {e["data-key"] for e in dom.items if e["tag"] == "tr" and "data-key" in e}
    assert {"target_dsn", "workers", "connections", "duration"} <= settings_keys
    assert next(e for e in dom.items if e.get("id") == "status")["_text"] == "COMPLETED"


def test_real_run_screenshot(traced_report: Path, tmp_path: Path) -> None:
    screenshot(traced_report, "html-report-startup.png", tmp_path)
    screenshot(traced_report, "html-report-whole-run.png", tmp_path, "#whole-run")


def test_real_run_whole_run_view(traced_report: Path, tmp_path: Path) -> None:
    # the view toggle: "#whole-run" opens on the full axis, where the measurement's spans show
    probe = tmp_path / "whole.html"
    probe.write_text(traced_report.read_text().replace("</body>", PROBE + "</body>"))
    dom = Elements(_chromium(["--window-size=1400,2000", "--dump-dom", probe.as_uri() + "#whole-run"],
                             tmp_path / "profile").stdout)
    wf = next(e for e in dom.items if e.get("id") == "wf")
    assert wf["data-view"] == "full"
    measurement = next(b for b in dom.cls("bar") if b["data-span-name"] == "phase.measurement")
    assert visible(measurement)


def no_external_urls(text: str) -> None:
    attr_urls = re.findall(r"""\b(?:src|href|action|formaction|poster|data)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""", text, re.I)
    assert not attr_urls, attr_urls
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", text, re.I)
    assert not re.search(r"@import", text, re.I)
    assert not re.search(r"<(?:link|iframe|img|object|embed)\b", text, re.I)
    assert len(re.findall(r"<script\b", text, re.I)) == 1  # our own inline script, no src
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)


def test_report_is_self_contained_and_holds_no_secret(traced_report: Path, traced_run: Path) -> None:
    text = traced_report.read_text(encoding="utf-8")
    no_external_urls(text)
    assert SECRET not in text
    assert "***" in text  # the redacted DSN is shown
    settings = json.loads((traced_run / "results.json").read_text())["settings"]
    assert settings["target_dsn"] and SECRET not in json.dumps(settings)


def test_run_without_trace_has_a_note_instead_of_a_waterfall(pg_dsn: str, tmp_path: Path) -> None:
    res = run_cli(["run", "--target-dsn", pg_dsn, "--workers", "1", "--connections", "2", "--warmup", "0.2s",
                   "--duration", "0.5s"], output=tmp_path, env=spanbench_env(SPANBENCH_TRACING="0"))
    assert res.returncode == 0, res.stderr + res.stdout
    run_dir = res.run_dir()
    assert not list(run_dir.glob("*.jsonl"))
    page = write_html_report(run_dir)
    dom = Elements(dump_dom(page, tmp_path))
    assert next(e for e in dom.items if e.get("id") == "no-trace")
    assert not dom.cls("bar") and not dom.cls("gap-label")
    assert {"all"} <= {e["data-kind"] for e in dom.items if e["tag"] == "tr" and e.get("data-kind")}
    assert dom.cls("point")


# --- synthetic: a known 7.5 s stall, foreign names, secrets in odd places -----------------


def _synthetic_run(folder: Path, results: dict | None) -> Path:
    b = spanbench_run(stall_ms=7500, queries=30)
    b.span('<script>alert("x")</script>', 100, 120, b.spans[0],
           attrs={"db.password": "hunter2-attr", "peer": 'postgresql://bob:hunter2-url@db:5432/x',
                  "note": '"><img src=x onerror=alert(1)>'})
    folder.mkdir(parents=True)
    (folder / "trace-all.jsonl").write_text(json.dumps(to_otlp(b.spans)) + "\n")
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    return folder


def test_known_stall_is_a_labelled_gap_between_its_neighbours(tmp_path: Path) -> None:
    results = {
        "run_id": "synthetic", "status": "FAILED", "reason": "worker <b>w1</b> died",
        "settings": {"target_dsn": "postgresql://bob:hunter2-settings@db.example:5432/x", "warmup": 2.0, "duration": 10.0},
        "timeline": [{"t_s": float(i), "qps": 1000.0 + i, "errors_per_s": 0.0} for i in range(12)],
        "measurement": {"seconds": 10, "queries": 10000, "errors": 0, "qps": 1000.0,
                        "latency": {"point_select": {"count": 10000, "p50_ms": 1, "p95_ms": 2, "p99_ms": 3,
                                                     "p999_ms": 4, "max_ms": 5, "mean_ms": 1.2, "errors": 0, "qps": 1000}},
                        "all": {"count": 10000, "p50_ms": 1, "p95_ms": 2, "p99_ms": 3, "p999_ms": 4, "max_ms": 5,
                                "mean_ms": 1.2}},
    }
    page = write_html_report(_synthetic_run(tmp_path / "run", results))
    text = page.read_text()
    for secret in ("hunter2-attr", "hunter2-url", "hunter2-settings"):
        assert secret not in text
    assert "<script>alert" not in text and "<img" not in text and "<b>w1</b>" not in text
    no_external_urls(text)

    dom = Elements(dump_dom(page, tmp_path))
    assert dom.root().get("data-ready") == "1"
    assert any(b["data-span-name"] == '<script>alert("x")</script>' for b in dom.cls("bar"))  # shown as text
    assert next(e for e in dom.items if e.get("id") == "reason")["_text"] == "worker <b>w1</b> died"
    stall = [lab for lab in dom.cls("gap-label") if float(lab["data-gap-ms"]) == 7500.0]
    assert len(stall) == 1 and stall[0]["data-critical"] == "true" and stall[0]["_text"] == "7.50s"
    assert visible(stall[0])
    # the gap sits, on screen, between w1's pool.init and its executor.setup
    gap = next(g for g in dom.cls("gap") if float(g["data-gap-ms"]) == 7500.0)
    assert abs(float(stall[0]["data-x"]) - (float(gap["data-x"]) + float(gap["data-w"]))) < 2.0 or \
        abs(float(stall[0]["data-x"]) + float(stall[0]["data-w"]) - float(gap["data-x"])) < 2.0  # label beside it
    w1 = [b for b in dom.cls("bar") if b["data-span-name"] in ("pool.init", "executor.setup")
          and float(b["data-start-ms"]) in (330.0, 8000.0)]
    pool = next(b for b in w1 if b["data-span-name"] == "pool.init")
    setup = next(b for b in w1 if b["data-span-name"] == "executor.setup" and b["data-start-ms"] == "8000.000")
    gap_x, gap_end = float(gap["data-x"]), float(gap["data-x"]) + float(gap["data-w"])
    assert abs(gap_x - (float(pool["data-x"]) + float(pool["data-w"]))) < 2.0
    assert abs(gap_end - float(setup["data-x"])) < 2.0
    screenshot(page, "html-report-synthetic-stall.png", tmp_path)


def test_trace_only_folder_and_bad_input(tmp_path: Path) -> None:
    page = write_html_report(_synthetic_run(tmp_path / "trace-only", None))
    assert 'class="bar' in page.read_text()
    with pytest.raises(ConfigError):
        write_html_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError):
        write_html_report(tmp_path / "empty")
    bad = _synthetic_run(tmp_path / "bad", None)
    (bad / "results.json").write_text("{ not json")
    with pytest.raises(ConfigError) as err:
        write_html_report(bad)
    assert "\n" not in str(err.value)


# --- what went wrong: errors by class, stalls, cut queries, partial workers -----------------


def _trouble_results(**extra) -> dict:
    m = {"seconds": 10, "queries": 9000, "errors": 42, "qps": 900.0,
         "latency": {"point_select": {"count": 9000, "p50_ms": 1, "p95_ms": 2, "p99_ms": 3, "p999_ms": 4, "max_ms": 5,
                                      "mean_ms": 1.2, "errors": 42, "qps": 900}},
         "all": {"count": 9000, "p50_ms": 1, "p95_ms": 2, "p99_ms": 3, "p999_ms": 4, "max_ms": 5, "mean_ms": 1.2}}
    m.update(extra.pop("measurement", {}))
    return {"run_id": "trouble", "status": "COMPLETED_WITH_ERRORS", "reason": "2 stalls",
            "settings": {"warmup": 1.0, "duration": 10.0},
            "timeline": [{"t_s": float(i), "qps": 900.0, "errors_per_s": 0.0} for i in range(11)],
            "measurement": m, **extra}


def test_trouble_sections_show_errors_by_class_stalls_cut_and_partial_workers(tmp_path: Path) -> None:
    results = _trouble_results(
        measurement={"cut": 7, "errors_by_class": {"point_select": {"40": 30, "<XX000>": 12}}},
        stalls=[{"start_s": 4.0, "seconds": 2.0, "kind": "errors+throughput", "min_qps": 3.0, "median_qps": 900.0,
                 "errors": 40}],
        partial={"workers": ["w1"], "seconds_missing": {"w1": 2.5}},
        warnings=["control store unreachable at the end <b>x</b>"],
    )
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))
    page = write_html_report(folder)
    text = page.read_text()
    assert "<XX000>" not in text and "<b>x</b>" not in text  # escaped, as everything from results.json
    no_external_urls(text)
    dom = Elements(dump_dom(page, tmp_path))
    assert dom.root().get("data-ready") == "1"
    by_class = [e for e in dom.items if e["tag"] == "tr" and e.get("data-class")]
    # most errors first, each with its kind and count
    assert [(e["data-kind"], e["data-class"], e["data-count"]) for e in by_class] == [
        ("point_select", "40", "30"), ("point_select", "<XX000>", "12")]
    stalls = [e for e in dom.items if e["tag"] == "tr" and "data-start-s" in e]
    assert [(float(e["data-start-s"]), float(e["data-seconds"]), e["data-kind"]) for e in stalls] == [
        (4.0, 2.0, "errors+throughput")]
    cut = next(e for e in dom.items if e.get("id") == "cut")
    assert cut["data-cut"] == "7"
    partial = [e for e in dom.items if e["tag"] == "tr" and e.get("data-worker")]
    assert [e["data-worker"] for e in partial] == ["w1"]
    cells = [e["_text"] for e in dom.items if e["tag"] == "td"]
    assert "2.5 s" in cells and "<XX000>" in cells
    warnings = next(e for e in dom.items if e.get("id") == "warnings")
    assert warnings
    assert any("control store unreachable at the end <b>x</b>" in e["_text"] for e in dom.items if e["tag"] == "li")


def test_trouble_sections_appear_only_when_present(tmp_path: Path) -> None:
    folder = tmp_path / "clean"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(_trouble_results(measurement={"cut": 0, "errors_by_class": {}},
                                                                     stalls=[], partial=None, warnings=[])))
    text = write_html_report(folder).read_text()
    for hook in ('id="trouble"', 'id="stalls"', 'id="cut"', 'id="partial"', 'id="warnings"', 'id="errors-by-class"'):
        assert hook not in text
    assert 'data-kind="all"' in text  # the page itself is there
