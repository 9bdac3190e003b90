"""Shared contracts and cross-cutting pieces of convertmesh: errors, bus, blobs, logs."""
