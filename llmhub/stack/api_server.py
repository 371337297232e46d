"""The HTTP API of the local stack (``llmhub serve``), started by ``llmhub stack up``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from llmhub.config import ApiSettings
from llmhub.stack.daemon import answers, start_daemon, stop_daemon


@dataclass(frozen=True)
class ApiStack:
    """An ``llmhub serve`` process with its pid and log under ``run_dir``."""

    run_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080

    @classmethod
    def for_settings(cls, stack_dir: Path, api: ApiSettings) -> ApiStack:
        return cls(run_dir=stack_dir / "api", host=api.host, port=api.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def is_running(self) -> bool:
        return answers(f"{self.url}/healthz")

    def start(self, timeout_s: float = 120.0) -> bool:
        """Start the API unless one answers; return True if a new one was started."""
        if self.is_running():
            return False
        command = [
            str(Path(sys.executable).with_name("llmhub")),
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        start_daemon(command, self.run_dir, "api", self.is_running, timeout_s, poll_s=0.5)
        return True

    def stop(self) -> None:
        stop_daemon(self.run_dir, "api")
