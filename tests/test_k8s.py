"""``spanbench k8s render``, deploy/k8s/ and the Dockerfile: workers on Kubernetes, checked without a cluster.

The manifests validate against the Kubernetes OpenAPI schema of a pinned release (the
``kubernetes-validate`` package ships the schemas: no network), their structure is what a run
needs (an Indexed Job of N pods, never restarted, one run id, DSNs only from the Secret), and
the exact commands and environment of their containers run here as local processes that
complete a run against the session's embedded PostgreSQL.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import run_cli, spanbench_env
from support.otlp_receiver import OtlpReceiver

from spanbench.k8s.render import render_command

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.30"  # the oldest release the manifests promise to fit (podFailurePolicy, Indexed Jobs)
# deploy/k8s/ is this render of examples/select_only.toml (README, "Kubernetes: a 10-worker run")
EXAMPLE = {"scenario": ROOT / "examples" / "select_only.toml", "image": "registry.example.com/spanbench:0.1.0",
           "workers": 10, "run_id": "k8s-example"}
STATIC_ONLY = {"otel-collector-service.yaml"}  # one Service for every run: not rendered
PASSWORD = "never-in-a-manifest-7f3a"


def render(tmp_path: Path, scenario: Path, workers: int, **options: Any) -> dict[str, dict[str, Any]]:
    out = tmp_path / "manifests"
    render_command(scenario, workers=workers, out=out, **{"image": "spanbench:test", **options})
    return {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.yaml"))}


def by_kind(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """'ConfigMap', 'orchestrator' and 'worker' (the Jobs, by component)."""
    out = {}
    for doc in docs.values():
        key = doc["metadata"]["labels"]["app.kubernetes.io/component"] if doc["kind"] == "Job" else doc["kind"]
        out[key] = doc
    return out


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


def scenario_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the schema


def test_rendered_manifests_fit_the_kubernetes_schema(tmp_path: Path) -> None:
    docs = render(tmp_path, EXAMPLE["scenario"], 3)
    assert len(docs) == 3
    for doc in docs.values():
        # strict: a misspelt or misplaced field is an error, not silently dropped by the API server
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_deploy_k8s_files_fit_the_kubernetes_schema() -> None:
    files = sorted(DEPLOY.glob("*.yaml"))
    assert len(files) == 4
    for path in files:
        kubernetes_validate.validate(yaml.safe_load(path.read_text(encoding="utf-8")), K8S_VERSION, strict=True)


def test_the_validator_rejects_a_broken_job(tmp_path: Path) -> None:
    # the check above is worth something only if a mistake fails it
    job = by_kind(render(tmp_path, EXAMPLE["scenario"], 2))["worker"]
    job["spec"]["paralelism"] = job["spec"].pop("parallelism")  # misspelt: the API server would drop it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------- the structure


def test_workers_are_an_indexed_job_never_restarted(tmp_path: Path) -> None:
    kinds = by_kind(render(tmp_path, EXAMPLE["scenario"], 7))
    spec = kinds["worker"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 7, 7)
    for job in (kinds["worker"], kinds["orchestrator"]):
        assert job["spec"]["backoffLimit"] == 0
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        rules = job["spec"]["podFailurePolicy"]["rules"]
        assert all(rule["action"] == "FailJob" for rule in rules)  # never Ignore: that re-creates the pod
        resources = container_of(job)["resources"]
        assert set(resources) == {"requests", "limits"} and all(set(r) == {"cpu", "memory"} for r in resources.values())
    args = container_of(kinds["worker"])["args"]
    assert args[args.index("--group-id") + 1] == "$(JOB_COMPLETION_INDEX)"
    assert args[args.index("--group-count") + 1] == "7"
    assert container_of(kinds["orchestrator"])["args"][-2:] == ["--workers", "7"]


def test_every_object_and_pod_shares_one_run_id(tmp_path: Path) -> None:
    docs = render(tmp_path, EXAMPLE["scenario"], 2)
    [run_id] = {d["metadata"]["labels"]["spanbench.io/run-id"] for d in docs.values()}
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", run_id)  # generated as `spanbench run` does
    kinds = by_kind(docs)
    for job in (kinds["worker"], kinds["orchestrator"]):
        assert job["spec"]["template"]["metadata"]["labels"]["spanbench.io/run-id"] == run_id
        assert run_id in job["metadata"]["name"]
    worker_args = container_of(kinds["worker"])["args"]
    assert worker_args[worker_args.index("--run-id") + 1] == run_id
    env = {e["name"]: e.get("value") for e in container_of(kinds["orchestrator"])["env"]}
    assert env["SPANBENCH_RUN_ID"] == run_id and env["SPANBENCH_LAUNCH_WORKERS"] == "false"
    volumes = kinds["orchestrator"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "scenario", "configMap": {"name": kinds["ConfigMap"]["metadata"]["name"]}} in volumes


def test_the_run_id_given_or_the_scenarios_wins(tmp_path: Path) -> None:
    path = scenario_file(tmp_path, 'run_id = "from-the-file"\nwarmup = "1s"\n')
    kinds = by_kind(render(tmp_path, path, 2))
    assert kinds["orchestrator"]["metadata"]["labels"]["spanbench.io/run-id"] == "from-the-file"
    assert "run_id" not in yaml.safe_load(yaml.safe_dump(kinds["ConfigMap"]))["data"]["scenario.toml"].split("#")[0]
    kinds = by_kind(render(tmp_path, path, 2, run_id="from-the-flag"))
    assert {d["metadata"]["labels"]["spanbench.io/run-id"] for d in kinds.values()} == {"from-the-flag"}


def test_dsns_and_headers_come_only_from_the_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = scenario_file(tmp_path, (
        "# a scenario as someone ran it by hand\n"
        f'target_dsn = "postgresql://bench:{PASSWORD}@db.internal:5432/bench"\n'
        f'control_dsn = "postgresql://ctl@ctl.internal/ctl?password={PASSWORD}"\n'
        'workers = 4\nlaunch_workers = true\nduration = "30s"\n'
    ))
    out = tmp_path / "manifests"
    render_command(path, image="spanbench:test", workers=3, out=out, secret="bench-secrets")
    texts = {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.yaml")}
    assert len(texts) == 3 and not any(PASSWORD in t or "db.internal" in t for t in texts.values())
    err = capsys.readouterr().err
    assert PASSWORD not in err
    assert "target_dsn (with its password) is not in the manifests" in err and "'bench-secrets', key target-dsn" in err

    kinds = by_kind({n: yaml.safe_load(t) for n, t in texts.items()})
    scenario = kinds["ConfigMap"]["data"]["scenario.toml"]
    # the keys the manifests own are comments now; the rest of the file is as written
    assert "# target_dsn: SPANBENCH_TARGET_DSN, from the Secret" in scenario
    assert 'duration = "30s"' in scenario and "# a scenario as someone ran it by hand" in scenario
    import tomllib

    assert tomllib.loads(scenario) == {"duration": "30s"}
    for component in ("orchestrator", "worker"):
        env = {e["name"]: e for e in container_of(kinds[component])["env"]}
        for var, key in (("SPANBENCH_TARGET_DSN", "target-dsn"), ("SPANBENCH_CONTROL_DSN", "control-dsn"),
                         ("OTEL_EXPORTER_OTLP_HEADERS", "otlp-headers")):
            assert "value" not in env[var]
            assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "bench-secrets"
            assert env[var]["valueFrom"]["secretKeyRef"]["key"] == key
        # no literal value anywhere that looks like a DSN or a header
        assert not any("://" in (e.get("value") or "") and "@" in e["value"] for e in env.values())


def test_deploy_k8s_is_what_render_writes(tmp_path: Path) -> None:
    out = tmp_path / "example"
    render_command(EXAMPLE["scenario"], image=EXAMPLE["image"], workers=EXAMPLE["workers"], run_id=EXAMPLE["run_id"],
                   out=out)
    rendered = {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.yaml")}
    static = {p.name: p.read_text(encoding="utf-8") for p in DEPLOY.glob("*.yaml") if p.name not in STATIC_ONLY}
    command = ("spanbench k8s render examples/select_only.toml --image registry.example.com/spanbench:0.1.0 "
               "--workers 10 --run-id k8s-example --out deploy/k8s")
    assert rendered == static, f"deploy/k8s/ is stale: run `{command}`"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("args", "message"), [
    (["missing.toml", "--workers", "2"], "scenario file not found: missing.toml"),
    (["{scenario}", "--workers", "0"], "--workers must be at least 1 (got 0)"),
    (["{bad}", "--workers", "4"], "connections (2) must be at least workers (4)"),
    (["{unknown}", "--workers", "2"], "unknown key(s) duraton"),
    (["{multiline}", "--workers", "2"], "write each of them on one line of its own"),
    (["{scenario}", "--workers", "2", "--run-id", "Not_A_Name"], "cannot name Kubernetes objects"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    files = {
        "scenario": scenario_file(tmp_path, 'duration = "1s"\n'),
        "bad": tmp_path / "bad.toml", "multiline": tmp_path / "multiline.toml", "unknown": tmp_path / "unknown.toml",
    }
    files["unknown"].write_text('duraton = "1s"\n', encoding="utf-8")
    files["bad"].write_text("connections = 2\n", encoding="utf-8")
    files["multiline"].write_text('target_dsn = """postgresql://u@h/db"""\nrun_id = """\nx"""\n', encoding="utf-8")
    argv = ["k8s", "render", *(a.format(**files) for a in args), "--image", "spanbench:test",
            "--out", str(tmp_path / "out")]
    result = run_cli(argv)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spanbench: error: "), result.stderr
    assert message in lines[0]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the image


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_spanbench_as_a_user_from_only_what_it_needs() -> None:
    steps = dockerfile_instructions(ROOT / "Dockerfile")
    args = dict(a.split("=", 1) for i, a in steps if i == "ARG" and "=" in a)
    [base] = [a for i, a in steps if i == "FROM"]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert re.fullmatch(r"python:3\.1[12]-slim(-\w+)?", base), base

    users = [a for i, a in steps if i == "USER"]
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: runAsNonRoot can check it
    assert uid == "10001"  # the pods' runAsUser (spanbench.k8s.manifests.UID)
    after_user = [i for i, _ in steps[[s[0] for s in steps].index("USER"):]]
    assert "RUN" not in after_user and "COPY" not in after_user
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["spanbench"]  # exec form: one image, both roles

    sources = [src for i, a in steps if i == "COPY" for src in a.split()[:-1]]
    assert sorted(sources) == ["README.md", "pyproject.toml", "src"]
    [install] = [a for i, a in steps if i == "RUN" and "pip install" in a]
    # the package (and its optional extras), nothing else
    assert re.search(r"pip install \"\.\$\{EXTRAS:\+\[\$EXTRAS\]\}\"( |$)", install), install

    ignore = [ln.strip() for ln in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "*"  # the build context is what is let back in, nothing more
    assert {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")} == set(sources)


# --------------------------------------------------------------------------- the pods, run here


def pod_env(container: dict[str, Any], secret: dict[str, str], pod: str, namespace: str,
            index: int | None = None) -> dict[str, str]:
    """The container's environment as the kubelet builds it: secrets, field refs, $(VAR) expansion."""
    env: dict[str, str] = {}
    if index is not None:  # the Job controller adds it to every pod of an Indexed Job
        env["JOB_COMPLETION_INDEX"] = str(index)
    fields = {"metadata.name": pod, "metadata.namespace": namespace}
    for item in container["env"]:
        source = item.get("valueFrom")
        if source is None:
            env[item["name"]] = expand(item["value"], env)
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            if ref["key"] in secret:
                env[item["name"]] = secret[ref["key"]]
            else:
                assert ref.get("optional"), f"Secret key {ref['key']} is required"
        else:
            env[item["name"]] = fields[source["fieldRef"]["fieldPath"]]
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR): a variable defined earlier is replaced, anything else is left as written."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), text)


def test_the_manifests_commands_run_a_run_here(pg_dsn: str, tmp_path: Path) -> None:
    workers = 3
    path = scenario_file(tmp_path, (
        f'target_dsn = "postgresql://bench:{PASSWORD}@db.internal/bench"\n'
        'warmup = "0.2s"\nduration = "0.5s"\nconnections = 6\n'
    ))
    with OtlpReceiver(tmp_path / "otlp.jsonl") as rx:
        kinds = by_kind(render(tmp_path, path, workers, otlp_endpoint=rx.http_endpoint))
        namespace = kinds["worker"]["metadata"]["namespace"]
        secret = {"target-dsn": pg_dsn, "control-dsn": pg_dsn}  # no otlp-headers: the key is optional

        # the orchestrator pod: its ConfigMap volume is a folder, its working directory an emptyDir
        orch = container_of(kinds["orchestrator"])
        [mount] = [m for m in orch["volumeMounts"] if m["name"] == "scenario"]
        etc = tmp_path / "etc"
        etc.mkdir()
        for name, text in kinds["ConfigMap"]["data"].items():
            (etc / name).write_text(text, encoding="utf-8")
        orch_dir = tmp_path / "orchestrator-pod"
        orch_dir.mkdir()
        orch_env = pod_env(orch, secret, "orchestrator-pod", namespace)
        orchestrator = subprocess.Popen(
            [sys.executable, "-m", "spanbench", *(expand(a, orch_env).replace(mount["mountPath"], str(etc))
                                                  for a in orch["args"])],
            env={**spanbench_env(), **orch_env}, cwd=orch_dir,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        worker = container_of(kinds["worker"])
        pods = []
        for index in range(workers):
            pod = f"{kinds['worker']['metadata']['name']}-{index}"
            env = pod_env(worker, secret, pod, namespace, index)
            cwd = tmp_path / pod
            cwd.mkdir()
            pods.append(subprocess.Popen(
                [sys.executable, "-m", "spanbench", *(expand(a, env) for a in worker["args"])],
                env={**spanbench_env(), **env}, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ))
        try:
            # workers first: a worker that fails would leave the orchestrator waiting for its READY
            outputs = [p.communicate(timeout=120) for p in pods]
            assert [p.returncode for p in pods] == [0] * workers, [err for _, err in outputs]
            _, orch_err = orchestrator.communicate(timeout=60)
        finally:
            for p in [orchestrator, *pods]:
                if p.poll() is None:
                    p.kill()
                    p.wait(10)
        assert orchestrator.returncode == 0, orch_err
        run_id = orch_env["SPANBENCH_RUN_ID"]
        results = json.loads((orch_dir / "spanbench-runs" / run_id / "results.json").read_text())
        assert results["status"] == "COMPLETED"
        assert sorted(w["worker_id"] for w in results["workers"]) == [f"w{i}" for i in range(workers)]
        assert all(w["first_query_unix_ns"] for w in results["workers"])
        assert results["measurement"]["queries"] > 0
        assert PASSWORD not in json.dumps(results)

        # every pod's spans reached the collector, each named by its pod
        def worker_pods(r: OtlpReceiver) -> set[str]:
            return {s["resource"].get("k8s.pod.name") for s in r.spans() if s["service_name"] == "spanbench-worker"}

        expected = {f"{kinds['worker']['metadata']['name']}-{i}" for i in range(workers)}
        assert rx.wait_for(lambda r: worker_pods(r) >= expected and worker_pods(r), timeout=10) == expected
        assert len({s["trace_id"] for s in rx.spans()}) == 1


# --------------------------------------------------------------------------- the command and README


def test_the_command_writes_the_files_and_says_what_next(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli(["k8s", "render", str(EXAMPLE["scenario"]), "--image", "spanbench:test", "--workers", "2",
                      "--run-id", "cli-run", "--namespace", "bench", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(out / n) for n in
                                     ("10-scenario-configmap.yaml", "20-orchestrator-job.yaml", "30-workers-job.yaml")]
    assert f"kubectl apply -f {out}" in result.stderr
    docs = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.yaml"))]
    assert {d["metadata"]["namespace"] for d in docs} == {"bench"}


def test_readme_documents_the_command_and_every_option() -> None:
    import typer.main

    from spanbench.cli import app

    render = typer.main.get_command(app).commands["k8s"].commands["render"]  # type: ignore[attr-defined]
    options = {o for p in render.params for o in p.opts if o.startswith("--")}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Kubernetes: a 10-worker run", 1)[1].split("\n## ", 1)[0]
    assert "spanbench k8s render SCENARIO" in readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    assert sorted(o for o in options if f"| `{o}` |" not in section) == []
