"""cors-handler: a standalone, high-throughput CORS preflight service."""

__version__ = "0.1.0"
