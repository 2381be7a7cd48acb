"""The Kubernetes objects of one run, as plain dicts: a ConfigMap, the orchestrator Job, the workers' Indexed Job.

The pods run the commands README documents for workers started elsewhere: the orchestrator
is ``spanbench run SCENARIO --workers N`` with ``SPANBENCH_LAUNCH_WORKERS=false`` and
``SPANBENCH_RUN_ID``, and worker ``i`` is ``spanbench worker --run-id ID --group-id i
--group-count N``, ``i`` being the pod's ``JOB_COMPLETION_INDEX``. DSNs and OTLP headers are
only ever references to the Secret, never values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from spanbench.errors import ConfigError

Manifest = dict[str, Any]

UID = 10001  # the Dockerfile's user: pods run as it, never as root
SCENARIO_DIR = "/etc/spanbench"
SCENARIO_FILE = "scenario.toml"
RUNS_DIR = "/runs"  # the working directory: each process writes spanbench-runs/<run id>/ here
# <name>-orchestrator must stay a 63-character DNS label (a Job's name is also a label value)
_RUN_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # a namespace's or a Secret's name
# Secret keys -> the variables `spanbench run` and `spanbench worker` read
SECRET_ENV = {"target-dsn": "SPANBENCH_TARGET_DSN", "control-dsn": "SPANBENCH_CONTROL_DSN"}
HEADERS_KEY = "otlp-headers"  # optional: a collector without auth needs none
JOIN_TIMEOUT = "10m"  # pods of a large run may wait for nodes and image pulls: longer than the 120s default


@dataclass(frozen=True)
class RunSpec:
    """What one run's manifests need to know."""

    run_id: str
    image: str
    workers: int
    scenario_text: str
    namespace: str = "default"
    secret: str = "spanbench"
    otlp_endpoint: str = "http://otel-collector:4318"

    def __post_init__(self) -> None:
        if not self.image.strip():
            raise ConfigError("--image must name the spanbench image (built from the repository's Dockerfile)")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1 (got {self.workers})")
        if not _RUN_ID.match(self.run_id):
            raise ConfigError(f"run id {self.run_id!r} cannot name Kubernetes objects: use 1-40 lowercase "
                              "letters, digits and '-', starting and ending with a letter or digit")
        for what, value in (("--namespace", self.namespace), ("--secret", self.secret)):
            if not _DNS_LABEL.match(value):
                raise ConfigError(f"{what} {value!r} is not a Kubernetes name: lowercase letters, digits and '-'")

    @property
    def name(self) -> str:
        return f"spanbench-{self.run_id}"


def manifests(run: RunSpec) -> dict[str, Manifest]:
    """File name -> object. ``kubectl apply -f DIR`` takes files in name order: the ConfigMap
    first, so the orchestrator's pod never waits for its volume."""
    return {
        "10-scenario-configmap.yaml": scenario_configmap(run),
        "20-orchestrator-job.yaml": orchestrator_job(run),
        "30-workers-job.yaml": workers_job(run),
    }


def scenario_configmap(run: RunSpec) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _metadata(run, f"{run.name}-scenario", "scenario"),
        "data": {SCENARIO_FILE: run.scenario_text},
    }


def orchestrator_job(run: RunSpec) -> Manifest:
    env = [
        _value("SPANBENCH_RUN_ID", run.run_id),
        _value("SPANBENCH_LAUNCH_WORKERS", "false"),  # the workers are the Indexed Job's pods
        # the workers follow the run's setting from RUN_STATUS; a DSN target is untraced by default
        _value("SPANBENCH_TRACING", "1"),
        _value("SPANBENCH_READY_TIMEOUT", JOIN_TIMEOUT),  # a scenario's own ready_timeout wins
        *_common_env(run),
    ]
    container = _container(run, "orchestrator", ["run", f"{SCENARIO_DIR}/{SCENARIO_FILE}", "--workers",
                                                 str(run.workers)], env, cpu=("250m", "1"), memory=("256Mi", "512Mi"))
    container["volumeMounts"].append({"name": "scenario", "mountPath": SCENARIO_DIR, "readOnly": True})
    volumes = [{"name": "scenario", "configMap": {"name": f"{run.name}-scenario"}}]
    return _job(run, f"{run.name}-orchestrator", "orchestrator", {}, container, volumes)


def workers_job(run: RunSpec) -> Manifest:
    # k8s expands $(JOB_COMPLETION_INDEX), which the Job controller sets in every pod of an Indexed Job
    args = ["worker", "--run-id", run.run_id, "--group-id", "$(JOB_COMPLETION_INDEX)",
            "--group-count", str(run.workers), "--join-timeout", JOIN_TIMEOUT]
    container = _container(run, "worker", args, _common_env(run), cpu=("1", "2"), memory=("256Mi", "1Gi"))
    indexed = {"completionMode": "Indexed", "completions": run.workers, "parallelism": run.workers}
    return _job(run, f"{run.name}-workers", "worker", indexed, container, [])


def _job(run: RunSpec, name: str, component: str, extra: dict[str, Any], container: Manifest,
         volumes: list[Manifest]) -> Manifest:
    spec: dict[str, Any] = {
        **extra,
        # A pod restarted mid-run would join a measurement already under way (or one that is
        # over): a failed or evicted pod fails its Job, and the run reports the loss.
        "backoffLimit": 0,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": {
            "metadata": {"labels": _labels(run, component)},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,  # spanbench never calls the Kubernetes API
                "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container],
                "volumes": [{"name": "runs", "emptyDir": {}}, *volumes],
            },
        },
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata(run, name, component), "spec": spec}


def _container(run: RunSpec, name: str, args: list[str], env: list[Manifest], *, cpu: tuple[str, str],
               memory: tuple[str, str]) -> Manifest:
    return {
        "name": name, "image": run.image, "args": args, "env": env, "workingDir": RUNS_DIR,
        "resources": {"requests": {"cpu": cpu[0], "memory": memory[0]},
                      "limits": {"cpu": cpu[1], "memory": memory[1]}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "runs", "mountPath": RUNS_DIR}],
    }


def _common_env(run: RunSpec) -> list[Manifest]:
    """Secret references, the collector, and the pod's name on every span's resource."""
    return [
        *(_secret(var, key, run.secret) for key, var in SECRET_ENV.items()),
        _secret("OTEL_EXPORTER_OTLP_HEADERS", HEADERS_KEY, run.secret, optional=True),
        _value("OTEL_EXPORTER_OTLP_ENDPOINT", run.otlp_endpoint),
        _field("POD_NAME", "metadata.name"),
        _field("POD_NAMESPACE", "metadata.namespace"),
        _value("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)"),
    ]


def _value(name: str, value: str) -> Manifest:
    return {"name": name, "value": value}


def _secret(name: str, key: str, secret: str, *, optional: bool = False) -> Manifest:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def _field(name: str, path: str) -> Manifest:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _labels(run: RunSpec, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "spanbench", "app.kubernetes.io/component": component,
            "spanbench.io/run-id": run.run_id}


def _metadata(run: RunSpec, name: str, component: str) -> Manifest:
    return {"name": name, "namespace": run.namespace, "labels": _labels(run, component)}
