"""The alertable record: what every source (anomalies, budget breaches, burn rates, SLO burns,
incidents) maps into, and what routes, silences and channels see."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

Severity = Literal["info", "warning", "error", "critical"]
Status = Literal["firing", "resolved"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2, "critical": 3}


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class Alertable:
    """One thing someone may need to hear about, keyed stably across re-evaluations.

    ``key`` identifies the alert across its life (an incident id, ``budget:<tenant>:...``): the
    PagerDuty dedup key and the outbox keys derive from it. ``fingerprint`` is what counts as a
    change worth a new notification; by default severity, title and summary, but a source may
    narrow it (the budget source only changes it when the breach date moves materially earlier).
    ``repeats=False`` exempts it from the routes' repeat interval (a predictive budget alert is
    told once, not every four hours).
    """

    key: str
    tenant_id: str
    source: str
    severity: Severity
    status: Status
    title: str
    summary: str
    occurred_at: datetime
    application: str | None = None
    resolved_at: datetime | None = None
    links: tuple[Link, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    change_basis: str | None = None
    repeats: bool = True

    @property
    def fingerprint(self) -> str:
        basis = self.change_basis or f"{self.severity}|{self.title}|{self.summary}"
        return hashlib.sha256(basis.encode()).hexdigest()[:16]

    @property
    def dedup_key(self) -> str:
        """The downstream incident key (PagerDuty ``dedup_key``, at most 255 characters)."""
        key = f"llmhub:{self.key}"
        if len(key) <= 255:
            return key
        return "llmhub:" + hashlib.sha256(self.key.encode()).hexdigest()

    def to_payload(self) -> dict[str, Any]:
        """The JSON form stored in the outbox (never contains channel secrets)."""
        data = asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat()
        data["resolved_at"] = self.resolved_at.isoformat() if self.resolved_at else None
        data["links"] = [asdict(link) for link in self.links]
        data["fingerprint"] = self.fingerprint
        data["dedup_key"] = self.dedup_key
        # Details come from the sources' own rows; round-trip them through JSON so dates and
        # decimals fail here, not in the sender.
        data["details"] = json.loads(json.dumps(self.details, default=str))
        return data


def from_payload(data: dict[str, Any]) -> Alertable:
    """The alertable an outbox payload (or an alert_state detail) was made from."""
    return Alertable(
        key=data["key"],
        tenant_id=data["tenant_id"],
        source=data["source"],
        severity=data["severity"],
        status=data["status"],
        title=data["title"],
        summary=data["summary"],
        occurred_at=datetime.fromisoformat(data["occurred_at"]),
        application=data.get("application"),
        resolved_at=datetime.fromisoformat(data["resolved_at"])
        if data.get("resolved_at")
        else None,
        links=tuple(Link(**link) for link in data.get("links", ())),
        details=dict(data.get("details") or {}),
        change_basis=data.get("change_basis"),
        repeats=data.get("repeats", True),
    )
