"""The Dockerfile, compose file, Prometheus, Grafana and Kubernetes manifests: they parse, and
they agree with each other and with the service (ports, paths, names, metrics).

No Docker engine or cluster runs here, so nothing is started; what can be checked statically is.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from service import metrics
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s" / "base"
MONITORING = DEPLOY / "k8s" / "components" / "servicemonitor"
EXAMPLE = DEPLOY / "k8s" / "overlays" / "example"


def load_yaml(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def exported_names() -> set[str]:
    """Every sample name /metrics can carry, from the metric definitions themselves."""
    names = {"up"}  # Prometheus' own
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        for family in obj.describe():
            kind, base = family.type, family.name
            names |= {
                "counter": {base + "_total"},
                "histogram": {base + "_bucket", base + "_sum", base + "_count"},
            }.get(kind, {base})
    return names


def metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(convserve_[a-z_]+|up)\b", expr))


# -- Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    steps = dockerfile()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) >= 2 and all("slim" in f for f in froms)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (health,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/healthz" in health
    (entry,) = [json.loads(rest) for word, rest in final if word == "ENTRYPOINT"]
    assert entry[0] == "gunicorn" and "db" not in entry  # migrations are an explicit command
    assert ("WORKDIR", "/app") in final
    copies = {rest.split()[0]: rest.split()[-1] for word, rest in final if word == "COPY"}
    conf = entry[entry.index("-c") + 1]
    assert conf == "/app/" + copies["deploy/gunicorn.conf.py"].removeprefix("./")
    installs = " ".join(rest for word, rest in steps if word == "RUN")
    assert "[dev" not in installs
    # the image answers ONNX uploads: the onnx extra is installed, not only the core package
    assert re.search(r"""pip install ["']?\.\[onnx\]""", installs), installs


def test_dockerfile_copies_only_what_exists_and_sets_the_migrations_path():
    steps = dockerfile()
    for word, rest in steps:
        if word == "COPY" and "--from" not in rest:
            for src in rest.split()[:-1]:
                assert (ROOT / src).exists(), src
    env = " ".join(rest for word, rest in steps if word == "ENV")
    assert "CONVSERVE_MIGRATIONS=/app/migrations" in env
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/" in env and "HOST=0.0.0.0" in env
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


# -- docker compose --------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    (doc,) = load_yaml(ROOT / "docker-compose.yml")
    return doc


def test_compose_orders_database_migration_then_server(compose):
    s = compose["services"]
    assert {"db", "migrate", "convserve", "prometheus", "grafana"} <= set(s)
    assert s["db"]["healthcheck"]["test"] and any("pgdata" in v for v in s["db"]["volumes"])
    assert s["migrate"]["entrypoint"] == ["convserve", "db", "upgrade"]
    assert s["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    deps = s["convserve"]["depends_on"]
    assert deps["db"]["condition"] == "service_healthy"
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert s["convserve"]["ports"] == ["8000:8000"]
    env = s["convserve"]["environment"]
    url = env["DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://") and "@db:5432/" in url
    assert "CONVSERVE_ADMIN_TOKEN" in env
    assert s["convserve"]["read_only"] is True and "/tmp" in s["convserve"]["tmpfs"]


def test_compose_mounts_exist_and_prometheus_scrapes_the_server(compose):
    for name in ("prometheus", "grafana"):
        for volume in compose["services"][name]["volumes"]:
            src = volume.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), src
    (prom,) = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "convserve"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["convserve:8000"]
    for rules in prom["rule_files"]:
        assert (DEPLOY / "prometheus" / rules).exists()


# -- alerts and dashboard ----------------------------------------------------------------


def test_alert_rules_use_only_exported_metrics():
    (doc,) = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    rules = [r for g in doc["groups"] for r in g["rules"]]
    alerts = {r["alert"] for r in rules}
    assert {
        "ConvserveInstanceDown",
        "ConvserveHigh5xxRatio",
        "ConvservePredictLatencyP99High",
        "ConvserveModelCacheThrashing",
    } <= alerts
    known = exported_names()
    for rule in rules:
        used = metric_names_in(rule["expr"])
        assert used and used <= known, (rule["alert"], used - known)


def test_grafana_provisioning_and_dashboard_agree(compose):
    provisioning = DEPLOY / "grafana" / "provisioning"
    (ds,) = load_yaml(provisioning / "datasources" / "prometheus.yml")
    source = ds["datasources"][0]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    (prov,) = load_yaml(provisioning / "dashboards" / "convserve.yml")
    path = prov["providers"][0]["options"]["path"]
    volumes = compose["services"]["grafana"]["volumes"]
    mounts = dict(v.split(":")[:2] for v in volumes if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == path
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "convserve.json").read_text())
    known = exported_names()
    titles = " | ".join(p["title"] for p in dash["panels"])
    for wanted in ("Requests", "Error", "latency", "Inference time", "Predictions per class"):
        assert wanted in titles, (wanted, titles)
    for p in dash["panels"]:
        for t in p["targets"]:
            assert t["datasource"]["uid"] == source["uid"]
            used = metric_names_in(t["expr"])
            assert used and used <= known, (p["title"], used - known)
    # no two panels on top of each other
    cells = [(x, y) for p in dash["panels"] for x, y in cells_of(p["gridPos"])]
    assert len(cells) == len(set(cells))


def cells_of(pos: dict) -> list[tuple[int, int]]:
    return [
        (x, y)
        for x in range(pos["x"], pos["x"] + pos["w"])
        for y in range(pos["y"], pos["y"] + pos["h"])
    ]


def test_the_dashboard_shows_queue_time_and_the_average_batch_per_model():
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "convserve.json").read_text())
    panels = {p["title"]: p for p in dash["panels"]}
    (queue,) = [p for title, p in panels.items() if title.startswith("Queue time")]
    exprs = [t["expr"] for t in queue["targets"]]
    assert queue["fieldConfig"]["defaults"]["unit"] == "s"
    for q in ("0.5", "0.99"):
        (expr,) = [e for e in exprs if e.startswith(f"histogram_quantile({q},")]
        assert "convserve_queue_duration_seconds_bucket" in expr
        assert re.search(r"sum by \(le, model, version\)", expr), expr
    (batch,) = [p for title, p in panels.items() if title.startswith("Average batch size")]
    ((expr, legend),) = [(t["expr"], t["legendFormat"]) for t in batch["targets"]]
    top, bottom = expr.split(" / ")
    assert "rate(convserve_inferences_total[" in top and top.startswith("sum by (model)")
    assert "rate(convserve_batch_executions_total[" in bottom and bottom.startswith(
        "sum by (model)"
    )
    assert legend == "{{model}}"
    (doc,) = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    (alert,) = [
        r for g in doc["groups"] for r in g["rules"] if r["alert"] == "ConvserveQueueTimeHigh"
    ]
    assert "convserve_queue_duration_seconds_bucket" in alert["expr"]


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing (Debian: prometheus)"
)
def test_promtool_accepts_config_and_rules():
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        out = subprocess.run(
            ["promtool", *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True
        )
        assert out.returncode == 0, out.stdout + out.stderr


# -- Kubernetes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    docs = {}
    for res in kustomization["resources"]:
        for doc in load_yaml(K8S / res):
            docs[doc["kind"]] = doc
    listed = {*kustomization["resources"], "kustomization.yaml"}
    assert {p.name for p in K8S.glob("*.yaml")} == listed  # no manifest left out
    return docs


def test_deployment_probes_ports_and_hardening(k8s, app):
    dep = k8s["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    (port,) = c["ports"]
    assert port["containerPort"] == int(env["PORT"]) and env["HOST"] == "0.0.0.0"
    routes = {r.rule for r in app.url_map.iter_rules()}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    assert c["readinessProbe"]["httpGet"]["port"] == port["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"] and c["resources"]["limits"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"] for m in c["volumeMounts"] if m["name"] in empty_dirs}
    assert any(env["PROMETHEUS_MULTIPROC_DIR"].startswith(m) for m in mounts)
    graceful = int(k8s["ConfigMap"]["data"]["GUNICORN_GRACEFUL_TIMEOUT"])
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > graceful + pre_stop


def test_references_between_manifests_resolve(k8s):
    dep, svc = k8s["Deployment"], k8s["Service"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert svc["spec"]["ports"][0]["targetPort"] in {p["name"] for p in c["ports"]}
    refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in c["envFrom"]}
    assert refs == {k8s["ConfigMap"]["metadata"]["name"], k8s["Secret"]["metadata"]["name"]}
    assert set(k8s["Secret"]["stringData"]) == {"DATABASE_URL", "CONVSERVE_ADMIN_TOKEN"}
    hpa = k8s["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    pdb = k8s["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_migration_job_runs_the_explicit_upgrade(k8s):
    job = k8s["Job"]["spec"]["template"]["spec"]
    (c,) = job["containers"]
    assert c["command"] == ["convserve", "db", "upgrade"]
    assert c["envFrom"] == [{"secretRef": {"name": k8s["Secret"]["metadata"]["name"]}}]
    assert job["securityContext"]["runAsNonRoot"] is True


def containers(docs) -> list[dict]:
    """Every container of every pod template (Deployment, Job) among `docs`."""
    out = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            out += doc["spec"]["template"]["spec"]["containers"]
    return out


def test_every_probe_has_explicit_bounds_a_busy_pod_survives(k8s):
    (c,) = k8s["Deployment"]["spec"]["template"]["spec"]["containers"]
    probes = {kind: c[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    for kind, probe in probes.items():
        # Kubernetes' default timeoutSeconds is 1 s: a probe must state its own, below its period
        assert 2 <= probe["timeoutSeconds"] <= probe["periodSeconds"], kind
        assert probe["failureThreshold"] >= 2, kind
        assert probe["httpGet"]["port"] == c["ports"][0]["name"], kind
    live, start = probes["livenessProbe"], probes["startupProbe"]
    # a restart needs half a minute without an answer, not one slow reply
    assert live["periodSeconds"] * live["failureThreshold"] >= 30
    assert start["httpGet"]["path"] == "/healthz"
    assert start["periodSeconds"] * start["failureThreshold"] >= 60  # time to boot and warm up
    assert "initialDelaySeconds" not in live  # the startup probe holds liveness off instead


def test_the_image_is_a_placeholder_that_kustomize_sets(k8s):
    (kustomization,) = load_yaml(K8S / "kustomization.yaml")
    (entry,) = kustomization["images"]
    images = {c["image"] for c in containers(k8s.values())}
    # the Deployment and the migration Job run the same image, named only by the placeholder
    assert images == {entry["name"]}
    # the base names no registry of its own (overlays match the placeholder name) and its tag
    # says plainly that it must be set
    assert "newName" not in entry and entry["newTag"] == "CHANGE-ME"
    (overlay,) = load_yaml(EXAMPLE / "kustomization.yaml")
    (mine,) = overlay["images"]
    assert mine["name"] == entry["name"] and mine["newName"] and mine["newTag"] != "CHANGE-ME"
    readme = (ROOT / "README.md").read_text()
    assert "kustomize edit set image convserve=" in readme and "images:" in readme


def test_the_servicemonitor_is_an_optional_component(k8s):
    assert not {"ServiceMonitor", "PrometheusRule"} & set(k8s)  # the base needs no Operator CRDs
    (component,) = load_yaml(MONITORING / "kustomization.yaml")
    assert component["kind"] == "Component"
    assert {p.name for p in MONITORING.glob("*.yaml")} == {
        *component["resources"],
        "kustomization.yaml",
    }
    docs = {d["kind"]: d for res in component["resources"] for d in load_yaml(MONITORING / res)}
    svc = k8s["Service"]
    mon = docs["ServiceMonitor"]["spec"]
    assert mon["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert mon["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert mon["endpoints"][0]["path"] == "/metrics"
    # the Operator's rules are the plain Prometheus alert rules, word for word
    (alerts,) = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    assert docs["PrometheusRule"]["spec"]["groups"] == alerts["groups"]
    (overlay,) = load_yaml(EXAMPLE / "kustomization.yaml")
    assert [(EXAMPLE / c).resolve() for c in overlay["components"]] == [MONITORING]
    assert [(EXAMPLE / r).resolve() for r in overlay["resources"]] == [K8S]


def test_the_migration_job_can_be_applied_again_for_a_new_image(k8s):
    job = k8s["Job"]
    # a Job's template is immutable: a finished one removes itself, a pending release deletes it
    # first (the documented command), and GitOps tools recreate it through their annotations
    assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 3600
    assert job["spec"]["activeDeadlineSeconds"] > 0
    notes = job["metadata"]["annotations"]
    assert notes["argocd.argoproj.io/hook"] == "PreSync"
    assert notes["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert notes["kustomize.toolkit.fluxcd.io/force"] == "enabled"
    name = job["metadata"]["name"]
    readme = (ROOT / "README.md").read_text()
    assert f"kubectl delete job {name} --ignore-not-found" in readme
    assert f"kubectl wait --for=condition=complete job/{name}" in readme


def kustomize(path: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d is not None]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl missing (its kustomize)")
def test_kustomize_builds_the_base_and_an_overlay_that_sets_the_image():
    base = kustomize(K8S)
    assert {d["kind"] for d in base} == {
        "ConfigMap", "Secret", "Job", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }  # fmt: skip
    assert {c["image"] for c in containers(base)} == {"convserve:CHANGE-ME"}
    built = kustomize(EXAMPLE)
    kinds = {d["kind"] for d in built}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds and {d["kind"] for d in base} <= kinds
    (overlay,) = load_yaml(EXAMPLE / "kustomization.yaml")
    (mine,) = overlay["images"]
    assert {c["image"] for c in containers(built)} == {f"{mine['newName']}:{mine['newTag']}"}
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "convserve" for d in base)


def test_every_configured_variable_is_one_the_service_reads(k8s):
    readers = (ROOT / "service" / "config.py").read_text()
    readers += (DEPLOY / "gunicorn.conf.py").read_text()
    for key in k8s["ConfigMap"]["data"]:
        assert f'"{key}"' in readers, key


def test_workers_freeze_the_loaded_app_out_of_the_garbage_collectors_view(monkeypatch):
    import gc
    import runpy

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/nonexistent")  # the config sets it if absent
    conf = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    gc.unfreeze()
    before = gc.get_freeze_count()
    try:
        conf["post_worker_init"](None)
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()


def test_uploads_spool_to_disk_not_to_the_memory_backed_tmp(compose, k8s):
    """Weights uploads (up to 600 MiB) are spooled to TMPDIR: a disk volume in compose and k8s,
    writable by the image's user, never the small memory-backed /tmp."""
    server = compose["services"]["convserve"]
    tmpdir = server["environment"]["TMPDIR"]
    assert "DATABASE_URL" in server["environment"]  # the shared settings are kept
    assert any(v.split(":")[1] == tmpdir for v in server["volumes"])
    assert tmpdir not in server.get("tmpfs", [])
    assert f"mkdir {tmpdir} && chown 10001:10001 {tmpdir}" in " ".join(
        rest for word, rest in dockerfile() if word == "RUN"
    )
    spec = k8s["Deployment"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == env["TMPDIR"]]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"].get("medium") != "Memory"
