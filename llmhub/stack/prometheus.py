"""Prometheus of the local stack: Debian's package, run as our own daemon on a loopback port.

``llmhub stack up`` installs ``prometheus`` (with ``promtool``) and ``prometheus-node-exporter``
from Debian's packages when they are missing, without letting Debian's service scripts start
them, and runs:

- ``prometheus`` on ``LLMHUB_PROMETHEUS_URL`` (default http://127.0.0.1:9090), with a
  configuration generated under ``<stack dir>/prometheus`` and the alert rules of
  ``infra/prometheus``; it scrapes the live ingester (``llmhub ingest --follow --metrics-port
  9464``, job ``llmhub-ingest``) and the textfile the Dagster ingestion runs write;
- ``prometheus-node-exporter`` with only its textfile collector, serving ``LLMHUB_METRICS_DIR``
  on 127.0.0.1:9465 (job ``llmhub-dagster-ingest``).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from llmhub.stack.daemon import answers, start_daemon, stop_daemon
from llmhub.stack.timescale import StackError

log = logging.getLogger(__name__)

INGEST_METRICS_PORT = 9464
TEXTFILE_EXPORTER_PORT = 9465
PACKAGES = ("prometheus", "prometheus-node-exporter")
# infra/prometheus of the checkout (the stack is started from one).
RULES_DIR = Path(__file__).resolve().parents[2] / "infra" / "prometheus"
SCRAPE_INTERVAL = "15s"


def binary(name: str) -> str | None:
    """Debian installs the node exporter as ``prometheus-node-exporter``."""
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


def install_packages() -> None:
    """``apt-get install`` the packages that are missing, with service starts refused.

    Debian's maintainer scripts would start ``prometheus`` on 0.0.0.0:9090 and the node
    exporter with every collector; a policy-rc.d that answers 101 ("action forbidden") keeps
    them stopped, and the stack starts its own instances instead.
    """
    missing = [p for p in PACKAGES if binary(p) is None]
    if not missing:
        return
    log.info("installing %s from Debian's packages", " ".join(missing))
    policy = Path("/usr/sbin/policy-rc.d")
    created = not policy.exists()
    if created:
        policy.write_text(
            "#!/bin/sh\n# llmhub stack up: no service starts during install\nexit 101\n"
        )
        policy.chmod(0o755)
    try:
        apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-qq"]
        for cmd in ([*apt, "update"], [*apt, "install", "-y", "--no-install-recommends", *missing]):
            result = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise StackError(f"{' '.join(cmd)} failed: {result.stderr.strip()[-2000:]}")
    finally:
        if created:
            policy.unlink(missing_ok=True)


def scrape_config(
    self_target: str,
    ingest_targets: list[str],
    textfile_target: str | None,
    rule_files: list[str],
    interval: str = SCRAPE_INTERVAL,
) -> dict:
    """The generated prometheus.yml (also what the tests start their own Prometheus with)."""
    jobs: list[dict] = [
        {"job_name": "prometheus", "static_configs": [{"targets": [self_target]}]},
        {"job_name": "llmhub-ingest", "static_configs": [{"targets": ingest_targets}]},
    ]
    if textfile_target:
        jobs.append(
            {
                "job_name": "llmhub-dagster-ingest",
                "static_configs": [{"targets": [textfile_target]}],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": rule_files,
        "scrape_configs": jobs,
    }


def write_config(path: Path, config: dict) -> None:
    """Write ``config`` and check it with ``promtool check config`` before anyone loads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".yml", delete=False) as tmp:
        yaml.safe_dump(config, tmp, sort_keys=False)
    promtool = binary("promtool")
    if promtool is not None:
        result = subprocess.run(
            [promtool, "check", "config", tmp.name], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            Path(tmp.name).unlink()
            raise StackError(f"generated Prometheus config is invalid: {result.stdout}")
    Path(tmp.name).replace(path)


@dataclass(frozen=True)
class PrometheusStack:
    """A Prometheus and a textfile-only node exporter with config, data and logs in
    ``run_dir``."""

    run_dir: Path
    metrics_dir: Path
    host: str = "127.0.0.1"
    port: int = 9090
    ingest_targets: list[str] = field(default_factory=lambda: [f"127.0.0.1:{INGEST_METRICS_PORT}"])
    textfile_port: int = TEXTFILE_EXPORTER_PORT
    scrape_interval: str = SCRAPE_INTERVAL

    @classmethod
    def for_settings(cls, stack_dir: Path, metrics_dir: Path, url: str) -> PrometheusStack:
        parts = urlsplit(url)
        return cls(
            run_dir=stack_dir / "prometheus",
            metrics_dir=metrics_dir,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 9090,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.run_dir / "prometheus.yml"

    def is_running(self) -> bool:
        return answers(f"{self.url}/-/ready")

    def exporter_running(self) -> bool:
        return answers(f"http://127.0.0.1:{self.textfile_port}/metrics")

    def configure(self) -> None:
        rules = self.run_dir / "rules"
        rules.mkdir(parents=True, exist_ok=True)
        rule_files = []
        for source in sorted(RULES_DIR.glob("*.rules.yml")):
            shutil.copyfile(source, rules / source.name)
            rule_files.append(str(rules / source.name))
        config = scrape_config(
            f"{self.host}:{self.port}",
            self.ingest_targets,
            f"127.0.0.1:{self.textfile_port}",
            rule_files,
            self.scrape_interval,
        )
        write_config(self.config_path, config)

    def start(self, timeout_s: float = 60.0) -> bool:
        """Install if needed and start both daemons unless they answer; True if Prometheus
        was started here."""
        install_packages()
        self.metrics_dir.mkdir(parents=True, exist_ok=True)
        if not self.exporter_running():
            exporter = binary("prometheus-node-exporter")
            if exporter is None:
                raise StackError("prometheus-node-exporter is not installed")
            start_daemon(
                [
                    exporter,
                    f"--web.listen-address=127.0.0.1:{self.textfile_port}",
                    "--collector.disable-defaults",
                    "--collector.textfile",
                    f"--collector.textfile.directory={self.metrics_dir}",
                ],
                self.run_dir,
                "textfile-exporter",
                self.exporter_running,
                timeout_s,
            )
        if self.is_running():
            # Pick up changed rules or targets without a restart (--web.enable-lifecycle).
            self.configure()
            self.reload()
            return False
        self.configure()
        prometheus = binary("prometheus")
        if prometheus is None:
            raise StackError("prometheus is not installed")
        start_daemon(
            [
                prometheus,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.run_dir / 'data'}",
                "--storage.tsdb.retention.time=15d",
                f"--web.listen-address={self.host}:{self.port}",
                "--web.enable-lifecycle",
            ],
            self.run_dir,
            "prometheus",
            self.is_running,
            timeout_s,
            poll_s=0.2,
        )
        return True

    def reload(self) -> None:
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except (urllib.error.URLError, OSError) as exc:
            log.warning("Prometheus on %s did not reload its configuration: %s", self.url, exc)

    def stop(self) -> None:
        stop_daemon(self.run_dir, "prometheus", grace_s=10.0)
        stop_daemon(self.run_dir, "textfile-exporter")
