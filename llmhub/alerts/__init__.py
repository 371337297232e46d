"""Alert delivery: alertables from the analytics sources, Alertmanager-style routing policy,
the outbox and its sender, channel clients and local recording receivers."""
