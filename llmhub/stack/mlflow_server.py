"""The MLflow tracking server of the local stack: PostgreSQL backend, local artifact store.

Started by ``llmhub stack up`` when ``MLFLOW_TRACKING_URI`` names this machine (the default,
http://127.0.0.1:5000); a remote tracking server is used as is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from llmhub.config import with_database
from llmhub.db import sqlalchemy_url
from llmhub.stack.timescale import StackError

DEFAULT_TRACKING_URI = "http://127.0.0.1:5000"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


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

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "mlflow.pid"

    def is_running(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start the server unless one answers; return True if a new one was started."""
        if self.is_running():
            return False
        artifacts = self.run_dir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        mlflow = Path(sys.executable).with_name("mlflow")
        with (self.run_dir / "mlflow.log").open("ab") as out:
            proc = subprocess.Popen(
                [
                    str(mlflow),
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
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while not self.is_running():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"MLflow did not start; see {self.run_dir / 'mlflow.log'}")
            time.sleep(0.5)
        return True

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        pid = int(self.pid_file.read_text())
        try:
            # The server runs in its own session: stop the whole group (gunicorn/uvicorn workers).
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.pid_file.unlink(missing_ok=True)
