"""Incident assets: the correlation engine over anomalies, events and forecasts."""

from assets.incidents.incidents import INCIDENTS_KEY, incident_integrity, incidents

__all__ = ["INCIDENTS_KEY", "incident_integrity", "incidents"]
