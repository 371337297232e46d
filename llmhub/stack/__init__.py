"""The local dev stack: TimescaleDB in a Debian trixie root and the Tansu Kafka-protocol broker.

Neither is needed in production: point ``LLMHUB_DATABASE_URL`` and ``LLMHUB_KAFKA_BOOTSTRAP`` at
real services and the stack leaves them alone.
"""
