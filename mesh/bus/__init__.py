"""The bus: NATS connection, JetStream streams and buckets, task dispatch, the worker runtime."""
