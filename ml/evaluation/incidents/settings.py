"""The incident evaluation's settings and targets (no imports: the CLI reads them at start)."""

DETECTORS = ("ensemble", "robust_baseline", "isolation_forest", "lstm_autoencoder")
TARGET_RECALL = 0.9
TARGET_FP_RATE = 0.05
TARGET_TENANT_MAPE = 12.0
FORECAST_HORIZON = 24
SEASON = 24
# A Monday midnight: fixed so a seed always gives the same traffic (the generator's daily and
# weekly cycles follow absolute time).
DEFAULT_TRAIN_END = "2026-01-05T00:00:00Z"
# The generator's weekend traffic relative to a weekday (llmhub.producers.synthetic).
WEEKEND_WEIGHT = 0.45
