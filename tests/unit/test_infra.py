"""The Docker Compose stack and the Terraform deployment under infra/.

Neither is run here: the compose file is parsed and held to the ports and settings the hub's
defaults expect, and the Terraform configuration is validated offline against a filesystem mirror
of the AWS provider when one is present.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmhub.config import DEFAULT_DATABASE_URL, DEFAULT_KAFKA_BOOTSTRAP
from llmhub.stack.prometheus import INGEST_METRICS_PORT, TEXTFILE_EXPORTER_PORT, scrape_config
from llmhub.stack.timescale import DATABASES

PROMETHEUS_PORT = 9090

INFRA = Path(__file__).resolve().parents[2] / "infra"
COMPOSE_FILE = INFRA / "docker-compose.yml"
TERRAFORM_DIR = INFRA / "terraform"
PLUGIN_DIR = Path("/opt/tf-plugins")
AWS_PROVIDER_VERSION = "5.100.0"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of each short-syntax ``ports`` entry."""
    mappings = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
        mappings.append((host_ip, int(parts[-2]), int(parts[-1])))
    return mappings


def test_compose_defines_exactly_the_stack_services(compose: dict[str, Any]) -> None:
    default = {name for name, spec in compose["services"].items() if not spec.get("profiles")}
    # The API runs only on request (it needs the hub image, which compose does not build).
    assert compose["services"]["api"]["profiles"] == ["api"]
    assert default == {
        "timescaledb",
        "kafka",
        "prometheus",
        "textfile-exporter",
        "grafana",
    }


def test_compose_prometheus_uses_the_stacks_config_and_rules(compose: dict[str, Any]) -> None:
    # The compose Prometheus and the one `llmhub stack up` starts must scrape the same jobs.
    spec = compose["services"]["prometheus"]
    mount = next(v for v in spec["volumes"] if v.startswith("./prometheus:"))
    target = mount.split(":")[1]
    config_flag = next(c for c in spec["command"] if c.startswith("--config.file="))
    config_file = INFRA / "prometheus" / Path(config_flag.split("=", 1)[1]).relative_to(target)
    config = yaml.safe_load(config_file.read_text())
    expected = scrape_config(
        f"127.0.0.1:{PROMETHEUS_PORT}",
        [f"127.0.0.1:{INGEST_METRICS_PORT}"],
        f"127.0.0.1:{TEXTFILE_EXPORTER_PORT}",
        [f"{target}/*.rules.yml"],
    )
    assert config == expected
    assert f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}" in spec["command"]
    exporter = compose["services"]["textfile-exporter"]["command"]
    assert f"--web.listen-address=127.0.0.1:{TEXTFILE_EXPORTER_PORT}" in exporter


@pytest.mark.parametrize("service", ["prometheus", "textfile-exporter", "grafana"])
def test_compose_host_network_services_bind_loopback(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["network_mode"] == "host" and "ports" not in spec
    listen = [c for c in spec.get("command", []) if c.startswith("--web.listen-address=")]
    bind = listen[0].split("=", 1)[1].rsplit(":", 1)[0] if listen else None
    bind = bind or spec["environment"]["GF_SERVER_HTTP_ADDR"]
    assert bind == "127.0.0.1"


@pytest.mark.parametrize(
    ("service", "image", "host_port", "container_port"),
    [
        ("timescaledb", "timescale/timescaledb:latest-pg17", 5433, 5432),
        ("kafka", "apache/kafka:3.9.0", 9092, 9092),
    ],
)
def test_compose_service_image_and_loopback_port(
    compose: dict[str, Any], service: str, image: str, host_port: int, container_port: int
) -> None:
    spec = compose["services"][service]
    assert spec["image"] == image
    assert _published(spec) == [("127.0.0.1", host_port, container_port)]


@pytest.mark.parametrize("service", ["timescaledb", "kafka"])
def test_compose_service_has_healthcheck(compose: dict[str, Any], service: str) -> None:
    healthcheck = compose["services"][service]["healthcheck"]
    assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"}
    assert healthcheck["retries"] > 0


def test_compose_ports_match_hub_defaults(compose: dict[str, Any]) -> None:
    # With the stack up, the hub's defaults must reach it without any LLMHUB_* override.
    db_port = int(re.search(r":(\d+)/", DEFAULT_DATABASE_URL).group(1))
    kafka_port = int(DEFAULT_KAFKA_BOOTSTRAP.rsplit(":", 1)[1])
    assert _published(compose["services"]["timescaledb"])[0][1] == db_port
    assert _published(compose["services"]["kafka"])[0][1] == kafka_port
    header = COMPOSE_FILE.read_text().split("\nname:", 1)[0]
    assert f"LLMHUB_DATABASE_URL={DEFAULT_DATABASE_URL}" in header
    assert f"LLMHUB_KAFKA_BOOTSTRAP={DEFAULT_KAFKA_BOOTSTRAP}" in header


def test_compose_trust_auth_only_as_overridable_default(compose: dict[str, Any]) -> None:
    env = compose["services"]["timescaledb"]["environment"]
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "${POSTGRES_HOST_AUTH_METHOD:-trust}"


def test_compose_init_sql_creates_the_stack_databases(compose: dict[str, Any]) -> None:
    mounts = [
        volume.split(":")
        for volume in compose["services"]["timescaledb"]["volumes"]
        if "docker-entrypoint-initdb.d" in volume
    ]
    assert len(mounts) == 1
    source, target = mounts[0][0], mounts[0][1]
    assert target.startswith("/docker-entrypoint-initdb.d/") and target.endswith(".sql")
    sql = (COMPOSE_FILE.parent / source).read_text()
    created = set(re.findall(r"^create database (\w+);", sql, flags=re.MULTILINE))
    assert created == set(DATABASES)


def test_compose_kafka_is_single_node_kraft_without_auto_create(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{DEFAULT_KAFKA_BOOTSTRAP}"
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1


def test_terraform_pins_aws_provider_exactly() -> None:
    versions = (TERRAFORM_DIR / "versions.tf").read_text()
    assert re.search(rf'version\s*=\s*"{re.escape(AWS_PROVIDER_VERSION)}"', versions)
    lock = (TERRAFORM_DIR / ".terraform.lock.hcl").read_text()
    assert f'version     = "{AWS_PROVIDER_VERSION}"' in lock
    sources = set(re.findall(r'source\s*=\s*"([^"]+)"', versions))
    assert sources == {"hashicorp/aws"}


def test_terraform_keeps_the_database_password_out_of_state() -> None:
    # A plain secret_string would write the generated password into the state file.
    tf = "\n".join(path.read_text() for path in TERRAFORM_DIR.rglob("*.tf"))
    assert "secret_string_wo" in tf
    assert not re.search(r"^\s*secret_string\s*=", tf, flags=re.MULTILINE)


def _terraform() -> str:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed")
    return terraform


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def terraform_env(tmp_path: Path) -> dict[str, str]:
    cli_config = tmp_path / "terraformrc"
    cli_config.write_text("")
    return {**os.environ, "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": str(cli_config)}


@pytest.fixture
def terraform_workdir(tmp_path: Path, terraform_env: dict[str, str]) -> Path:
    """infra/terraform (and the alert rules it loads from infra/prometheus) copied and
    initialised offline from the provider mirror."""
    terraform = _terraform()
    if not (PLUGIN_DIR / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        pytest.skip(f"no filesystem mirror of the AWS provider at {PLUGIN_DIR}")
    workdir = tmp_path / "infra" / "terraform"
    shutil.copytree(
        TERRAFORM_DIR, workdir, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*")
    )
    shutil.copytree(INFRA / "prometheus", tmp_path / "infra" / "prometheus")
    _run(
        [
            terraform,
            "init",
            "-backend=false",
            f"-plugin-dir={PLUGIN_DIR}",
            "-lockfile=readonly",
            "-input=false",
            "-no-color",
        ],
        workdir,
        terraform_env,
    )
    return workdir


def test_terraform_validates_offline(
    terraform_workdir: Path, terraform_env: dict[str, str]
) -> None:
    result = _run([_terraform(), "validate", "-no-color"], terraform_workdir, terraform_env)
    assert "The configuration is valid" in result.stdout


def test_terraform_tests_pass_with_a_mocked_provider(
    terraform_workdir: Path, terraform_env: dict[str, str]
) -> None:
    # tests/*.tftest.hcl: Cognito in front of Dagster, MLflow's basic-auth app, one database
    # login per service (every AWS call mocked, no credentials).
    result = _run([_terraform(), "test", "-no-color"], terraform_workdir, terraform_env)
    assert re.search(r"Success! [1-9]\d* passed, 0 failed", result.stdout), result.stdout


def test_terraform_loads_the_promtool_tested_alert_rules() -> None:
    # The managed Prometheus must get the very files the promtool tests check.
    monitoring = (TERRAFORM_DIR / "monitoring.tf").read_text()
    assert 'fileset("${path.module}/../prometheus", "*.rules.yml")' in monitoring
    assert list((INFRA / "prometheus").glob("*.rules.yml"))


def test_terraform_gives_each_service_its_own_database_login() -> None:
    main = (TERRAFORM_DIR / "main.tf").read_text()
    logins = dict(re.findall(r'(\w+)\s*=\s*\{ login = "(\w+)", group = "llmhub_\1"', main))
    assert logins == {
        "ingest": "svc_ingest",
        "api": "svc_api",
        "dagster": "svc_dagster",
        "mlflow": "svc_mlflow",
    }


def test_terraform_is_formatted(terraform_env: dict[str, str]) -> None:
    terraform = _terraform()
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-no-color", str(TERRAFORM_DIR)],
        env=terraform_env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"terraform fmt would rewrite:\n{result.stdout}"
