"""deploy/k8s rendered offline with the kustomize of the kubectl installed here
(v5), every core object validated against the Kubernetes 1.32 schemas
(kubernetes-validate), every custom resource against its published CRD schema
(vendored in crd_schemas/), and the settings that must agree with the rest of the
project checked: probes on genre_serve's health endpoint, the drain inside the
grace period, the entrypoint's command line, the autoscaler's metric."""

import copy
import functools
import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from genre_serve.cli import build_parser
from genre_serve.serving import launcher

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("cpu", "gpu", "object-storage")
KUBECTL = shutil.which("kubectl")
CRD_SCHEMAS = Path(__file__).with_name("crd_schemas")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="no kubectl here to render the kustomizations")


def _kustomize_major() -> int:
    out = subprocess.run([KUBECTL, "version", "--client", "-o", "json"], capture_output=True, text=True).stdout
    return int(re.match(r"v(\d+)", json.loads(out)["kustomizeVersion"]).group(1))


def render(overlay: str) -> list[dict]:
    done = subprocess.run([KUBECTL, "kustomize", str(K8S / "overlays" / overlay)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr, done.stderr  # nothing deprecated in the kustomize we target
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _make_strict(schema: dict) -> None:
    """Make a CRD schema reject unknown fields, as `kubectl apply --validate=strict`
    (the API server prunes them silently otherwise: a misspelt field is lost, not
    refused). Objects that list their properties get additionalProperties: false
    unless the CRD keeps unknown fields (x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, dict):
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for value in schema.values():
            _make_strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _make_strict(value)


@functools.cache
def _crd_schema(api_version: str, kind: str) -> dict:
    """The vendored schema of a custom resource, strict, loaded once (the
    InferenceService's is 621 KiB); validation only reads it."""
    group, version = api_version.split("/")
    path = CRD_SCHEMAS / f"{group}_{version}_{kind}.json.gz"  # scripts/vendor_crd_schemas.py's names
    assert path.exists(), f"no vendored schema for {api_version} {kind}: see crd_schemas/README.md"
    schema = json.loads(gzip.decompress(path.read_bytes()))
    _make_strict(schema)
    schema["properties"]["metadata"] = {"type": "object"}  # the API server's ObjectMeta, not the CRD's
    return schema


def validate_custom_resource(doc: dict) -> None:
    """Validate a custom resource against its vendored CRD schema (jsonschema: the
    CRD's x-kubernetes-* keywords are ignored, the OpenAPI v3 subset is checked)."""
    import jsonschema

    jsonschema.validate(doc, _crd_schema(doc["apiVersion"], doc["kind"]), cls=jsonschema.Draft4Validator)


def kserve_docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / "kserve" / "inferenceservice.yaml").read_text()) if d]


def _by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


def _entrypoint() -> list[str]:
    line = next(ln for ln in (ROOT / "deploy" / "Dockerfile").read_text().splitlines() if ln.startswith("ENTRYPOINT"))
    return json.loads(line.split(" ", 1)[1])


@needs_kubectl
def test_the_kustomize_here_is_the_one_written_for():
    assert _kustomize_major() >= 5


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_core_object_of_every_overlay_is_valid_kubernetes(overlay):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = render(overlay)
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler",
                                         "PodMonitor"}
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):  # a custom resource: its CRD's schema
            validate_custom_resource(doc)
            assert doc["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
            continue
        kubernetes_validate.validate(doc, "1.32", strict=True)


def test_the_kserve_objects_are_valid_against_kserves_crds():
    docs = kserve_docs()
    assert {d["kind"] for d in docs} == {"ServingRuntime", "InferenceService"}
    for doc in docs:
        validate_custom_resource(doc)


def test_the_crd_check_refuses_a_misspelt_field_and_a_wrong_type():
    import jsonschema

    service = _by_kind(kserve_docs())["InferenceService"]
    misspelt = copy.deepcopy(service)
    misspelt["spec"]["predictor"]["minReplica"] = misspelt["spec"]["predictor"].pop("minReplicas")
    wrong_type = copy.deepcopy(service)
    wrong_type["spec"]["predictor"]["minReplicas"] = "two"
    for bad in (misspelt, wrong_type):
        with pytest.raises(jsonschema.ValidationError):
            validate_custom_resource(bad)


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_deployment_agrees_with_serve(overlay):
    kinds = _by_kind(render(overlay))
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": launcher.DEFAULT_HTTP_PORT, "grpc": launcher.DEFAULT_GRPC_PORT,
                     "metrics": launcher.DEFAULT_METRICS_PORT, "health": launcher.DEFAULT_HEALTH_PORT}
    # Probes on genre_serve's endpoint, not Triton's (green while an instance is dead).
    for probe, path in (("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                        ("livenessProbe", "/v2/health/live")):
        assert container[probe]["httpGet"] == {"path": path, "port": "health"}, probe
    args = build_parser().parse_args(_entrypoint()[1:] + container["args"])
    assert args.command == "serve" and args.host == "0.0.0.0" and not args.open_control
    assert pod["terminationGracePeriodSeconds"] >= args.drain_delay_s + args.drain_timeout_s + 5
    assert any(e["name"] == "GENRE_SERVE_CONTROL_KEY" for e in container["env"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    if overlay == "object-storage":
        assert launcher.is_remote_repository(str(args.model_repository))
        assert all(m["mountPath"] != "/models" for m in container["volumeMounts"])
    else:
        assert str(args.model_repository) == "/models"
        assert {"name": "models", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    assert (gpus is None) == (overlay == "cpu")
    # The Service and the disruption budget select these pods; the Service's ports are the container's.
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = kinds[kind]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items(), kind
    assert {p["targetPort"] for p in kinds["Service"]["spec"]["ports"]} <= set(ports)


@needs_kubectl
def test_the_autoscaler_scales_on_the_metric_the_adapter_rule_makes():
    hpa = _by_kind(render("gpu"))["HorizontalPodAutoscaler"]
    name = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    (rule,) = [r for r in rules if r["name"]["as"] == name]
    # Triton's counters: queue time over answered requests.
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]


def test_the_kserve_runtime_runs_the_launcher_on_kserves_ports():
    runtime, service = (_by_kind(kserve_docs())[k] for k in ("ServingRuntime", "InferenceService"))
    (container,) = runtime["spec"]["containers"]
    args = build_parser().parse_args(_entrypoint()[1:] + container["args"])
    assert (args.http_port, args.grpc_port, str(args.model_repository)) == (8080, 9000, "/mnt/models")
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready",
                                                      "port": launcher.DEFAULT_HEALTH_PORT}
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] and model["modelFormat"]["name"] == "triton"
    assert "triton" in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]


def test_a_repository_in_object_storage_goes_to_triton_as_it_is():
    server = launcher.TritonServer("s3://bucket/repository", control_key="k")
    assert "--model-repository=s3://bucket/repository" in server.command(Path("/backends"))
    with pytest.raises(launcher.ServerError, match="control-key"):
        launcher.TritonServer("gs://bucket/repository").start()
