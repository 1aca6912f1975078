"""Compose and Kubernetes: schema-valid, wired together (names, selectors, ports, uids), secrets referenced and
never stored, and every setting named the way bot/config.py reads it."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from bot import config as bot_config
from tests.deploy.support import DEPLOY, K8S, load_all_yaml, load_yaml, parse_dockerfile, run_tool, tool

COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
ARC_VALUES = K8S / "arc" / "values.yaml"
ARC_PVC = K8S / "arc" / "cache-pvc.yaml"
README = DEPLOY / "README.md"
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
# Names compose uses for itself, not for the service.
COMPOSE_ONLY = {"POSTGRES_PASSWORD"}


def _service_env_names() -> set[str]:
    names = getattr(bot_config, "_ENV", None)
    files = getattr(bot_config, "_FILE_ENV", None)
    assert isinstance(names, dict) and isinstance(files, dict), "bot/config.py no longer exposes _ENV/_FILE_ENV"
    return set(names) | set(files)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all_yaml(path):
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


# --- compose --------------------------------------------------------------------------------------------------


def test_compose_matches_the_compose_spec() -> None:
    result = run_tool([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_postgres_15_with_a_named_volume_and_healthcheck(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert db["image"] == "postgres:15"
    volume = db["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in compose["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert "ports" not in db  # only the service reaches the database
    assert ":?" in db["environment"]["POSTGRES_PASSWORD"]  # compose refuses to start without a password


def test_compose_bot_waits_for_the_database_and_is_locked_down(compose: dict[str, Any]) -> None:
    bot = compose["services"]["bot"]
    assert bot["depends_on"]["db"]["condition"] == "service_healthy"
    url = bot["environment"]["TUNEBOT_DATABASE_URL"]
    assert url.startswith("postgresql://tunebot:") and "@db:5432/tunebot" in url
    assert (COMPOSE.parent / bot["build"]["context"] / bot["build"]["dockerfile"]).resolve() == (
        DEPLOY / "docker" / "bot.Dockerfile"
    ).resolve()
    assert bot["env_file"][0]["path"] == ".env"
    port = bot["environment"]["PORT"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(bot["healthcheck"]["test"])
    assert bot["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert bot["read_only"] is True and bot["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in bot["security_opt"]
    secret = compose["secrets"][bot["secrets"][0]]
    assert bot["environment"]["PRIVATE_KEY_PATH"] == f"/run/secrets/{bot['secrets'][0]}"
    assert secret["file"].startswith("./secrets/")


def test_filled_in_settings_and_keys_are_git_ignored() -> None:
    ignored = (DEPLOY / ".gitignore").read_text().split()
    assert ".env" in ignored and "secrets/" in ignored


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_every_setting_is_one_the_service_reads(compose: dict[str, Any], manifests: dict[str, Any]) -> None:
    known = _service_env_names()
    example = set(_env_example()) - COMPOSE_ONLY
    compose_env = set(compose["services"]["bot"]["environment"])
    configmap = set(manifests["ConfigMap/tunebot-config"]["data"])
    container = manifests["Deployment/tunebot-bot"]["spec"]["template"]["spec"]["containers"][0]
    deployment_env = {e["name"] for e in container["env"]}
    for where, names in (("deploy/.env.example", example), ("compose.yaml", compose_env),
                         ("k8s/configmap.yaml", configmap), ("k8s/deployment.yaml", deployment_env)):
        assert names, f"{where}: no settings found to check"
        assert names <= known, f"{where} sets {sorted(names - known)}, which bot/config.py does not read"


def test_env_example_holds_no_real_secret() -> None:
    secrets = {name: value for name, value in _env_example().items()
               if re.search(r"SECRET|TOKEN|PASSWORD|SIGNING_KEY", name)}
    assert {"WEBHOOK_SECRET", "TUNEBOT_JOB_SIGNING_KEY", "POSTGRES_PASSWORD"} <= set(secrets)  # found what to check
    assert [name for name, value in secrets.items() if value != ""] == [], "secrets must be empty in the example"


# --- Kubernetes ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_strictly(manifests: dict[str, dict[str, Any]], version: str) -> None:
    assert {"Deployment/tunebot-bot", "Service/tunebot-bot", "ConfigMap/tunebot-config"} <= set(manifests)
    for name, doc in manifests.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} against Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_validator_rejects_a_misspelt_field(manifests: dict[str, dict[str, Any]]) -> None:
    deployment = manifests["Deployment/tunebot-bot"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    deployment = load_yaml(K8S / "deployment.yaml")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.rsplit(":", 1)[0] == kustomization["images"][0]["name"]


def test_no_secret_values_are_stored(manifests: dict[str, dict[str, Any]]) -> None:
    assert not [name for name in manifests if name.startswith("Secret/")]
    container = manifests["Deployment/tunebot-bot"]["spec"]["template"]["spec"]["containers"][0]
    secret_like = [e for e in container["env"] if re.search(r"SECRET|TOKEN|KEY$|DATABASE_URL", e["name"])]
    assert {"WEBHOOK_SECRET", "TUNEBOT_JOB_SIGNING_KEY", "TUNEBOT_DATABASE_URL"} <= {e["name"] for e in secret_like}
    for entry in secret_like:
        assert "secretKeyRef" in entry.get("valueFrom", {}), entry["name"]
    configmap = manifests["ConfigMap/tunebot-config"]["data"]
    assert not [k for k in configmap if re.search(r"SECRET|TOKEN|PASSWORD|SIGNING", k)]


def test_readme_creates_every_referenced_secret_key(manifests: dict[str, dict[str, Any]]) -> None:
    readme = README.read_text()
    pod = manifests["Deployment/tunebot-bot"]["spec"]["template"]["spec"]
    refs = {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in pod["containers"][0]["env"] if "valueFrom" in e}
    refs |= {(v["secret"]["secretName"], item["key"]) for v in pod["volumes"] if "secret" in v
             for item in v["secret"]["items"]}
    assert len(refs) >= 3  # the database URL, the webhook secret, the signing key at least
    for secret, key in refs:
        assert f"create secret generic {secret}" in readme, secret
        assert re.search(rf"--from-(literal|file)={re.escape(key)}=", readme), (secret, key)


def test_deployment_is_highly_available_and_probed(manifests: dict[str, dict[str, Any]]) -> None:
    deployment = manifests["Deployment/tunebot-bot"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = spec["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert container[probe]["httpGet"]["port"] in ports
    configmap = manifests["ConfigMap/tunebot-config"]["data"]
    assert int(configmap["PORT"]) == ports["http"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert container["envFrom"][0]["configMapRef"]["name"] == "tunebot-config"


def test_deployment_runs_non_root_with_a_read_only_root(manifests: dict[str, dict[str, Any]]) -> None:
    pod = manifests["Deployment/tunebot-bot"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # The uid the image was built with, so file ownership and runAsNonRoot agree.
    _, stages = parse_dockerfile(DEPLOY / "docker" / "bot.Dockerfile")
    user = stages[-1].all("USER")[-1].args
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == user
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # the only writable place on a read-only root
    assert manifests["ServiceAccount/tunebot-bot"]["automountServiceAccountToken"] is False


def test_service_and_pdb_select_the_deployments_pods(manifests: dict[str, dict[str, Any]]) -> None:
    labels = manifests["Deployment/tunebot-bot"]["spec"]["template"]["metadata"]["labels"]
    container = manifests["Deployment/tunebot-bot"]["spec"]["template"]["spec"]["containers"][0]
    service = manifests["Service/tunebot-bot"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    pdb = manifests["PodDisruptionBudget/tunebot-bot"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["minAvailable"] < manifests["Deployment/tunebot-bot"]["spec"]["replicas"]  # drains can proceed
    namespaces = {doc["metadata"].get("namespace") for doc in manifests.values() if doc["kind"] != "Namespace"}
    assert namespaces == {manifests["Namespace/tunebot"]["metadata"]["name"]}


# --- actions-runner-controller ---------------------------------------------------------------------------------

# Top-level values of the gha-runner-scale-set chart (charts/gha-runner-scale-set/values.yaml, ARC 0.14).
ARC_KEYS = {"githubConfigUrl", "githubConfigSecret", "proxy", "maxRunners", "minRunners", "runnerGroup",
            "runnerScaleSetName", "scaleSetLabels", "fullnameOverride", "githubServerTLS", "keyVault", "containerMode",
            "listenerTemplate", "listenerMetrics", "template", "controllerServiceAccount", "namespaceOverride",
            "annotations", "labels", "resourceMeta"}


@pytest.fixture(scope="module")
def arc() -> dict[str, Any]:
    return load_yaml(ARC_VALUES)


def test_arc_values_use_chart_keys_and_scale_to_zero(arc: dict[str, Any]) -> None:
    assert set(arc) <= ARC_KEYS, set(arc) - ARC_KEYS
    assert arc["minRunners"] == 0 and 1 <= arc["maxRunners"] <= 64
    assert 0 < len(arc["runnerScaleSetName"]) <= 45  # the chart refuses longer names
    assert arc["scaleSetLabels"] == ["gpu"]
    assert re.fullmatch(r"https://github\.com/[^/]+/[^/]+", arc["githubConfigUrl"]), "runners must be repo-scoped"
    assert isinstance(arc["githubConfigSecret"], str)  # a pre-created Secret, not inline credentials


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_arc_runner_template_is_a_valid_pod_spec(arc: dict[str, Any], version: str) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner"}, "spec": arc["template"]["spec"]}
    kubernetes_validate.validate(pod, version, strict=True)


def test_arc_runner_gets_one_gpu_and_the_runner_image(arc: dict[str, Any]) -> None:
    spec = arc["template"]["spec"]
    (runner,) = [c for c in spec["containers"] if c["name"] == "runner"]
    assert runner["command"] == ["/home/runner/run.sh"]
    assert runner["resources"]["limits"]["nvidia.com/gpu"] == runner["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert "tunebot-runner" in runner["image"]
    _, stages = parse_dockerfile(DEPLOY / "docker" / "runner.Dockerfile")
    assert f"{spec['securityContext']['runAsUser']}:{spec['securityContext']['runAsGroup']}" == (
        stages[-1].all("USER")[-1].args
    )
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in runner["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    pvc = load_all_yaml(ARC_PVC)[0]
    assert volumes[mounts["/cache"]]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    kubernetes_validate.validate(pvc, K8S_VERSIONS[-1], strict=True)
    env = {e["name"]: e.get("value") for e in runner["env"]}
    cached = ("TUNEBOT_CACHE", "TUNEBOT_BENCH_DATA", "HF_HOME", "MODELSCOPE_CACHE", "EVALSCOPE_CACHE")
    assert all(env[name].startswith("/cache/") for name in cached)
    # The same places the runner image sets, so a pod and a plain `docker run` share one cache layout.
    image_env = " ".join(i.args for i in stages[-1].all("ENV"))
    for name in cached:
        assert f"{name}={env[name]}" in image_env, name


def test_readme_names_every_deploy_file() -> None:
    readme = README.read_text()
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and path.name not in {"README.md", ".gitignore"}:
            rel = path.relative_to(DEPLOY)
            assert str(rel) in readme or path.name in readme, f"deploy/README.md does not mention {rel}"
