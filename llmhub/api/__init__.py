"""The hub's HTTP API: OTLP and contract events in, marts and analytics out (``llmhub serve``)."""
