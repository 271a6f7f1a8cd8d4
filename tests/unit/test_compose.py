"""docker-compose.yml cannot run here (no Docker engine), so check what can be checked."""

from pathlib import Path

import yaml

from spakinect_pipeline.env_names import known_env_names

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
APP_SERVICES = {"topics", "ingress", "worker-dedupe", "worker-postgres", "worker-email"}


def test_app_services_use_only_env_names_the_settings_read():
    known = known_env_names()
    services = COMPOSE["services"]
    assert set(services) >= APP_SERVICES
    for name in APP_SERVICES:
        env = services[name]["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name} sets env names no setting reads: {sorted(unknown)}"
        assert "KAFKA_BOOTSTRAP_SERVERS" in env


def test_every_image_has_an_explicit_version_tag():
    for name, service in COMPOSE["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image"
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: image {image!r} has no tag"
        assert tag not in ("", "latest"), f"{name}: image {image!r} needs a version tag"


def test_each_stage_runs_as_its_own_worker():
    commands = {tuple(s["command"]) for s in COMPOSE["services"].values() if "command" in s}
    for stage in ("dedupe", "postgres", "email"):
        assert ("worker", stage) in commands
