"""The bus: NATS connection, JetStream streams and buckets, tasks and results, the one consume
loop, and the worker runtime."""
