"""The public REST gateway: Convertly-compatible HTTP in front of the gRPC mesh."""
