"""docker-compose.yml cannot run here (no Docker engine), so check what can be checked."""

from pathlib import Path

import yaml

from cli.env_names import known_env_names

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


ROOT = Path(__file__).parents[2]


def mounts(service: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named volumes left out)."""
    found = {}
    for volume in COMPOSE["services"][service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            found[target] = ROOT / source
    return found


def test_prometheus_mounts_existing_files_and_loads_the_alert_rules():
    binds = mounts("prometheus")
    for source in binds.values():
        assert source.exists(), f"prometheus mounts {source}, which does not exist"
    command = COMPOSE["services"]["prometheus"]["command"]
    config_path = next(a.split("=", 1)[1] for a in command if a.startswith("--config.file="))
    config = yaml.safe_load(binds[config_path].read_text())
    for rule_file in config["rule_files"]:
        in_container = str(Path(config_path).parent / rule_file)
        assert in_container in binds, f"rule file {rule_file} is not mounted"
        assert binds[in_container].name == "alerts.yml"


def test_prometheus_scrapes_the_ingress_and_every_worker_where_they_listen():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    services = COMPOSE["services"]
    expected = {f"ingress:{services['ingress']['environment']['INGRESS_PORT']}"}
    for stage in ("dedupe", "postgres", "email"):
        env = services[f"worker-{stage}"]["environment"]
        # Bound to 127.0.0.1 (the default) a worker could not be scraped from another container.
        assert env["STREAMS_WEB_BIND"] == "0.0.0.0"
        expected.add(f"worker-{stage}:{env['STREAMS_WEB_PORT']}")
    assert targets == expected


def test_grafana_provisions_the_datasource_and_the_dashboard_from_mounted_files():
    binds = mounts("grafana")
    for source in binds.values():
        assert source.exists(), f"grafana mounts {source}, which does not exist"
    datasources = binds["/etc/grafana/provisioning/datasources"]
    (datasource,) = yaml.safe_load((datasources / "prometheus.yml").read_text())["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in COMPOSE["services"]["prometheus"]["ports"]
    providers = binds["/etc/grafana/provisioning/dashboards"]
    (provider,) = yaml.safe_load((providers / "spakinect.yml").read_text())["providers"]
    dashboards = binds[provider["options"]["path"]]
    assert (dashboards / "spakinect-pipeline.json").exists()
    home = COMPOSE["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (dashboards / Path(home).name).exists()
