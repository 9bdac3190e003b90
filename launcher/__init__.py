"""Starts the whole mesh on one machine: `python -m launcher` (what `make run` does)."""
