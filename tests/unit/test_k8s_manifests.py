"""deploy/k8s rendered by ``kubectl kustomize`` (no cluster here), checked against the code.

Every env name must be one a settings class reads, every probe path one the
process serves, every image the one the Dockerfile builds, every container
non-root with a read-only root filesystem.
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
import tomllib
import typing
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from cli.env_names import SETTINGS, known_env_names
from cli.main import parser
from spakinect_pipeline.config import ConfigError, env_name, load_settings

ROOT = Path(__file__).parents[2]
K8S = ROOT / "deploy" / "k8s"
TREES = {
    "base": K8S / "base",
    "production": K8S / "overlays" / "production",
    "managed": K8S / "overlays" / "managed",
}
PACKAGES = ("events", "ingress", "streams", "sinks", "spakinect_pipeline")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = "spakinect-pipeline"
# Secrets by nature, though not typed SecretStr: a DSN carries the database password.
SECRET_NAMES = {"POSTGRES_DSN", "POSTGRES_MIGRATIONS_DSN"}


@cache
def rendered(tree: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: `make k8s-tools` installs it"
    result = subprocess.run(
        [kubectl, "kustomize", str(TREES[tree])], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def of_kind(tree: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(tree) if doc["kind"] == kind]


def workloads(tree: str) -> list[dict[str, Any]]:
    return [d for d in rendered(tree) if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def config(tree: str) -> dict[str, str]:
    (config_map,) = of_kind(tree, "ConfigMap")
    data: dict[str, str] = config_map["data"]
    return data


def settings_classes() -> set[type[BaseSettings]]:
    """Every pydantic-settings class in the pipeline's packages, found by importing them."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            importlib.import_module(info.name)
    found: set[type[BaseSettings]] = set()
    todo = list(BaseSettings.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in PACKAGES:
            found.add(cls)
    return found


def secret_env_names() -> set[str]:
    names = set(SECRET_NAMES)
    for cls in SETTINGS:
        for field, info in cls.model_fields.items():
            if SecretStr in (info.annotation, *typing.get_args(info.annotation)):
                names.add(env_name(cls, field))
            elif any(SecretStr in typing.get_args(arg) for arg in typing.get_args(info.annotation)):
                names.add(env_name(cls, field))  # lists of secrets (INGRESS_HMAC_SECRETS)
    return names


def role(container: dict[str, Any]) -> str:
    """``ingress``, a stage name, or the one-shot command (``topics``, ``migrate``)."""
    args = container["args"]
    return str(args[1] if args[0] == "worker" else args[0])


def test_env_names_cover_every_settings_class() -> None:
    assert settings_classes() == set(SETTINGS)


@pytest.mark.parametrize("tree", TREES)
def test_both_trees_render_the_whole_pipeline(tree: str) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered(tree)}
    for stage in ("dedupe", "postgres", "email"):
        assert ("Deployment", f"spakinect-worker-{stage}") in kinds
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        assert (kind, "spakinect-ingress") in kinds
    assert any(kind == "NetworkPolicy" for kind, _ in kinds)
    assert not of_kind(tree, "Secret"), "secrets are referenced, never written here"
    roles = {role(c) for w in workloads(tree) for c in containers(w)}
    assert roles == {"ingress", "dedupe", "postgres", "email", "topics", "migrate"}


@pytest.mark.parametrize("tree", TREES)
def test_every_env_name_is_a_setting_and_secrets_come_from_the_secret(tree: str) -> None:
    known = known_env_names()
    secrets = secret_env_names()
    unknown = set(config(tree)) - known
    assert not unknown, f"ConfigMap keys no setting reads: {sorted(unknown)}"
    assert not set(config(tree)) & secrets, "secrets in the ConfigMap"
    for workload in workloads(tree):
        for container in containers(workload):
            for env in container.get("env", []):
                assert env["name"] in known, f"{env['name']} is not a setting"
                if env["name"] in secrets:
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert (ref["name"], ref["key"]) == ("spakinect-pipeline-secrets", env["name"])
                    assert "value" not in env
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"].startswith("spakinect-pipeline-config")


@pytest.mark.parametrize("tree", TREES)
def test_configmap_values_are_valid_settings(
    tree: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env file
    for name, value in config(tree).items():
        monkeypatch.setenv(name, value)
    for name, value in mounted_stand_ins(tree, tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INGRESS_SHARED_SECRET", "from-the-secret")
    for cls in SETTINGS:
        try:
            load_settings(cls)
        except ConfigError as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{tree}: {exc}")


def ingress_routes() -> set[str]:
    from ingress.app import create_app
    from ingress.settings import IngressSettings
    from tests.helpers import RecordingPublisher

    app = create_app(IngressSettings(allow_unauthenticated=True), publisher=RecordingPublisher())
    return {route.path for route in app.routes}  # type: ignore[attr-defined]


def mounted_stand_ins(tree: str, tmp_path: Path) -> dict[str, str]:
    """Files the pods mount (the CA bundle), written locally, and the Kafka password."""
    import trustme

    stand_ins = (
        {"KAFKA_SASL_PASSWORD": "from-the-secret"} if "KAFKA_SASL_MECHANISM" in config(tree) else {}
    )
    if "KAFKA_SSL_CAFILE" in config(tree):
        trustme.CA().cert_pem.write_to_path(str(tmp_path / "ca.crt"))
        stand_ins["KAFKA_SSL_CAFILE"] = str(tmp_path / "ca.crt")
    return stand_ins


def secret_stand_ins() -> dict[str, str]:
    """Valid values for the Secret's keys, so a stage builds as it would in its pod."""
    from spakinect_pipeline.phi.crypto import new_key_entry

    return {
        "POSTGRES_DSN": "postgresql://spakinect@postgres:5432/spakinect",
        "PHI_ENCRYPTION_KEYS": new_key_entry("k1"),
        "PHI_INDEX_KEY": new_key_entry().split(":", 1)[1],
    }


def worker_routes(
    tree: str, stage: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> set[str]:
    """The worker's web routes, built with only the env its manifest gives it."""
    from streams.worker import build_stage

    (worker,) = (
        c for w in workloads(tree) for c in containers(w) if c["args"] == ["worker", stage]
    )
    stand_ins = secret_stand_ins()
    for name in secret_env_names() & stand_ins.keys():
        monkeypatch.delenv(name, raising=False)
    for env in worker.get("env", []):
        if env["name"] in stand_ins:
            monkeypatch.setenv(env["name"], stand_ins[env["name"]])
    monkeypatch.setenv("STREAMS_STATE_DIR", str(tmp_path / stage))
    app = build_stage(stage)
    return {route.resource.canonical for route in app.web.web_app.router.routes()}


@pytest.mark.parametrize("tree", TREES)
def test_probes_use_paths_and_ports_the_processes_serve(
    tree: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = config(tree)
    monkeypatch.chdir(tmp_path)
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name, value in mounted_stand_ins(tree, tmp_path).items():
        monkeypatch.setenv(name, value)
    serves = {"ingress": (ingress_routes(), int(settings["INGRESS_PORT"]))}
    for stage in ("dedupe", "postgres", "email"):
        serves[stage] = (
            worker_routes(tree, stage, monkeypatch, tmp_path),
            int(settings["STREAMS_WEB_PORT"]),
        )
    probed = set()
    for workload in workloads(tree):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            routes, port = serves[role(container)]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert set(ports.values()) == {port}
            for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
                if kind not in container:
                    continue
                get = container[kind]["httpGet"]
                assert get["path"] in routes, f"{role(container)} serves no {get['path']}"
                assert ports.get(get["port"], get["port"]) == port
                probed.add((role(container), kind, get["path"]))
    for process in serves:
        assert (process, "livenessProbe", "/healthz") in probed
        assert (process, "readinessProbe", "/readyz") in probed


def dockerfile() -> dict[str, str]:
    """The Dockerfile's last ENTRYPOINT and USER, and the uid its useradd gives that user."""
    found: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        word, _, rest = line.strip().partition(" ")
        if word in ("ENTRYPOINT", "USER"):
            found[word] = rest.strip()
        if "useradd" in line:
            found["uid"] = line.split("--uid", 1)[1].split()[0]
    return found


@pytest.mark.parametrize("tree", TREES)
def test_images_are_the_dockerfile_image_with_its_entrypoint(tree: str) -> None:
    built = dockerfile()
    assert built["ENTRYPOINT"] == f'["{IMAGE}"]'
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert IMAGE in scripts
    for workload in workloads(tree):
        for container in containers(workload):
            repository, _, tag = container["image"].rpartition(":")
            assert repository.rpartition("/")[2] == IMAGE
            assert tag == VERSION
            assert (repository == IMAGE) == (tree == "base")
            assert "command" not in container, "the Dockerfile's ENTRYPOINT runs the CLI"
            parser().parse_args(container["args"])  # a real subcommand


@pytest.mark.parametrize("tree", TREES)
def test_containers_run_as_non_root_on_a_read_only_root(tree: str) -> None:
    uid = int(dockerfile()["uid"])
    state_dir = config(tree)["STREAMS_STATE_DIR"]
    for workload in workloads(tree):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid != 0
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in containers(workload):
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            if container["args"][0] == "worker":  # Faust's state (RocksDB) is written here
                assert "emptyDir" in volumes[mounts[state_dir]]
            assert "memory" in container["resources"]["limits"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])


@pytest.mark.parametrize("tree", TREES)
def test_selectors_and_targets_name_what_exists(tree: str) -> None:
    deployments = {d["metadata"]["name"]: d for d in of_kind(tree, "Deployment")}
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}

    def selects(selector: dict[str, str]) -> set[str]:
        return {n for n, lab in labels.items() if selector.items() <= lab.items()}

    (service,) = of_kind(tree, "Service")
    assert selects(service["spec"]["selector"]) == {"spakinect-ingress"}
    for pdb in of_kind(tree, "PodDisruptionBudget"):
        assert selects(pdb["spec"]["selector"]["matchLabels"]) == {pdb["metadata"]["name"]}
    (hpa,) = of_kind(tree, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
    for policy in of_kind(tree, "NetworkPolicy"):
        assert selects(policy["spec"]["podSelector"]["matchLabels"])


def test_the_managed_overlay_mounts_the_ca_and_requires_the_sasl_password() -> None:
    """docs/managed-services.md: SASL_SSL/SCRAM, the CA from a ConfigMap, the password a Secret."""
    settings = config("managed")
    assert settings["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert settings["KAFKA_SASL_MECHANISM"].startswith("SCRAM-SHA-")
    ca_dir, _, ca_file = settings["KAFKA_SSL_CAFILE"].rpartition("/")
    kafka_roles = {"ingress", "dedupe", "postgres", "email", "topics"}
    for workload in workloads("managed"):
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in containers(workload):
            (mount,) = (m for m in container["volumeMounts"] if m["mountPath"] == ca_dir)
            assert mount.get("readOnly") is True
            source = volumes[mount["name"]]["configMap"]
            assert source["name"] == "spakinect-ca"
            assert {"key": ca_file, "path": ca_file} in source["items"]
            password = [e for e in container.get("env", []) if e["name"] == "KAFKA_SASL_PASSWORD"]
            if role(container) in kafka_roles:
                (env,) = password
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref == {
                    "name": "spakinect-pipeline-secrets",
                    "key": "KAFKA_SASL_PASSWORD",
                    "optional": False,
                }
            else:
                assert password == []  # migrate talks to Postgres only
