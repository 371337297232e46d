"""The MLflow tracking server of the local stack: PostgreSQL backend, local artifact store.

Started by ``llmhub stack up`` when ``MLFLOW_TRACKING_URI`` names this machine (the default,
http://127.0.0.1:5000); a remote tracking server is used as is.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from llmhub.config import with_database
from llmhub.db import sqlalchemy_url
from llmhub.stack.daemon import answers, start_daemon, stop_daemon


@dataclass(frozen=True)
class MlflowStack:
    """An ``mlflow server`` process with its pid, log and artifacts under ``run_dir``."""

    run_dir: Path
    backend_store_uri: str
    host: str = "127.0.0.1"
    port: int = 5000

    @classmethod
    def for_settings(cls, stack_dir: Path, database_url: str, uri: str) -> MlflowStack:
        parts = urlsplit(uri)
        return cls(
            run_dir=stack_dir / "mlflow",
            backend_store_uri=sqlalchemy_url(with_database(database_url, "mlflow")),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5000,
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def is_running(self) -> bool:
        return answers(f"{self.url}/health")

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start the server unless one answers; return True if a new one was started."""
        if self.is_running():
            return False
        artifacts = self.run_dir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        command = [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(artifacts),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        start_daemon(command, self.run_dir, "mlflow", self.is_running, timeout_s, poll_s=0.5)
        return True

    def stop(self) -> None:
        stop_daemon(self.run_dir, "mlflow", grace_s=10.0)
