"""Turning a transformers CLAP checkpoint into a model directory (the `export` extra).

Nothing here is imported by the daemon: torch and transformers are loaded lazily
inside :func:`listener.export.exporter.export_model`.
"""
