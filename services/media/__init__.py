"""The media worker: video and audio conversion with PyAV, run inside a sandboxed child."""
