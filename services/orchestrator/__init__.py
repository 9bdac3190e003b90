"""The orchestrator: the gRPC JobService, job state in KV, dispatch and results."""
