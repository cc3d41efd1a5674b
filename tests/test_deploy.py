"""The deployment files, checked as far as a machine without a Docker engine can: the compose
file and what it mounts, the image's Dockerfile, Prometheus' config (promtool) and the
gateway config the compose file runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from gateway.config import load_config
from tests.observability.test_dashboards import exported_names

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
_METRIC = re.compile(r"\bgateway_[a-z0-9_]+")


def bind_mounts(service: str) -> dict[str, str]:
    """Container path -> host path (relative to the repository) of a service's bind mounts."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = source[2:]
    return mounts


def test_compose_runs_the_gateway_redis_prometheus_and_grafana_from_files_that_exist():
    assert {"gateway", "redis", "prometheus", "grafana"} <= set(SERVICES)
    for service in SERVICES:
        for target, source in bind_mounts(service).items():
            assert (ROOT / source).exists(), f"{service} mounts {source}, which does not exist"
    assert SERVICES["gateway"]["build"] == "." and (ROOT / "Dockerfile").exists()
    assert bind_mounts("gateway") == {"/etc/gateway/config.yaml": "deploy/config.yaml"}


def test_the_image_runs_the_gateway_entry_point_as_an_unprivileged_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile.split("\nFROM ")[-1]  # the last stage is the image
    user = re.search(r"^USER (\S+)", runtime, re.MULTILINE)
    assert user and user.group(1).split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["gateway"]' in runtime
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["gateway"] == "gateway.cli:main"
    assert '"--config", "/etc/gateway/config.yaml"' in runtime
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "*" in ignored and {"!gateway/", "!providers/", "!pyproject.toml", "!README.md"} <= set(ignored)


def test_the_compose_gateway_config_is_valid_listens_where_prometheus_scrapes_and_uses_the_compose_redis():
    config = load_config(str(ROOT / "deploy" / "config.yaml"), env={})
    assert config.server.host == "0.0.0.0" and config.server.port == 8080 and config.server.workers == 2
    assert config.store.url == "redis://redis:6379/0"
    assert SERVICES["gateway"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert SERVICES["gateway"]["ports"] == ["${GATEWAY_PUBLISH:-8080}:8080"]
    keyed = load_config(str(ROOT / "deploy" / "config.yaml"),
                        env={"DEEPINFRA_TOKEN": "x", "RESEARCH_API_KEY": "sk-research"})
    assert "llama-3.1-8b" in keyed.models and keyed.teams["research"].key_hashes
    assert [r.provider for r in keyed.models["llama-3.1-8b"].routes] == ["deepinfra"]  # the mock steps aside

    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["dns_sd_configs"][0] == {"names": ["gateway"], "type": "A", "port": 8080, "refresh_interval": "15s"}
    assert job["metrics_path"] == "/metrics"


def test_grafana_provisioning_points_at_the_compose_prometheus_and_the_mounted_dashboards():
    mounts = bind_mounts("grafana")
    assert mounts["/etc/grafana/provisioning"] == "grafana/provisioning"
    provider = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/llm-gateway.yaml").read_text())["providers"][0]
    assert mounts[provider["options"]["path"]] == "grafana/dashboards"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (ROOT / "grafana/dashboards" / Path(home).name).exists()
    datasource = yaml.safe_load((ROOT / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    source = datasource["datasources"][0]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert source["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]
    assert "9090:9090" in SERVICES["prometheus"]["ports"]
    assert bind_mounts("prometheus")["/etc/prometheus/prometheus.yml"] == "deploy/prometheus.yml"
    for rule_file in prometheus["rule_files"]:
        assert bind_mounts("prometheus")[f"/etc/prometheus/{rule_file}"] == f"deploy/{rule_file}"


def test_alerts_name_only_metrics_the_gateway_exports():
    exported = exported_names()
    groups = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())["groups"]
    for rule in (rule for group in groups for rule in group["rules"]):
        assert not set(_METRIC.findall(rule["expr"])) - exported, rule["alert"]


def test_promtool_accepts_the_prometheus_config_and_its_alert_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        message = "promtool is not installed (Debian's prometheus package has it; scripts/test.sh installs it)"
        if os.environ.get("GATEWAY_REQUIRE_REAL") == "1":
            pytest.fail(message)
        pytest.skip(message)
    checked = subprocess.run([promtool, "check", "config", str(ROOT / "deploy" / "prometheus.yml")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout and "rules found" in checked.stdout


def test_the_replicas_override_balances_over_the_gateway_service_with_files_that_exist():
    class ComposeLoader(yaml.SafeLoader):
        """YAML with Compose's `!reset` tag (drop what the base file says)."""

    ComposeLoader.add_constructor("!reset", lambda loader, node: None)
    override = yaml.load((ROOT / "deploy" / "compose.replicas.yaml").read_text(), Loader=ComposeLoader)
    assert override["services"]["gateway"] == {"ports": None}  # no replica publishes the port
    lb = override["services"]["lb"]
    # Compose resolves an override's paths from the first file's folder: the repository root.
    source, target = lb["volumes"][0].split(":")[:2]
    assert (ROOT / source).exists() and target == "/etc/nginx/nginx.conf"
    nginx = (ROOT / source).read_text()
    assert "set $gateway http://gateway:8080;" in nginx and "proxy_buffering off;" in nginx
    assert "location = /metrics" in nginx  # scrapes go to each replica, never through the balancer


def test_compose_answers_with_no_provider_account_every_model_from_the_mock_stand_in():
    config = load_config(str(ROOT / "deploy" / "config.yaml"), env={"RESEARCH_API_KEY": "sk-research-1"})
    assert config.models and all([r.provider for r in model.routes] == ["mock"] for model in config.models.values())
    assert all(route.price is not None for model in config.models.values() for route in model.routes)
    assert not any(team.loopback_key_hashes for team in config.teams.values())  # no client is loopback in Docker
    assert config.teams["research"].key_hashes
    assert "RESEARCH_API_KEY" in SERVICES["gateway"]["environment"]


def test_the_deploy_guide_shows_an_env_file_with_a_team_key_and_says_loopback_keys_do_not_work_in_docker():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    env_file = guide.split("cat > .env <<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    set_names = [line.split("=", 1)[0] for line in env_file.splitlines() if line and not line.startswith("#")]
    assert "RESEARCH_API_KEY" in set_names
    assert not [name for name in set_names if name.endswith(("_TOKEN", "_API_KEY")) and name != "RESEARCH_API_KEY"]
    assert "Docker's port mapping" in guide and "loopback" in guide
