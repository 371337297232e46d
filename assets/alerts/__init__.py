"""Alert delivery: alertables -> outbox (``alerting/outbox``) -> channels
(``alerting/delivery_attempts``), with a check on notifications that keep failing."""

from assets.alerts.delivery import alert_deliveries, notifications_delivered
from assets.alerts.outbox import ALERT_SOURCE_KEYS, alert_outbox

__all__ = [
    "ALERT_SOURCE_KEYS",
    "alert_deliveries",
    "alert_outbox",
    "notifications_delivered",
]
