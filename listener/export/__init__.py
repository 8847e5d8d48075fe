"""Getting and checking a model directory: export a transformers CLAP checkpoint (the
`export` extra: exporter, trace, htsat, optimize, quantize), pull a published export
(pull), compare int8 with fp32 (verify) and time the per-window work (bench).

Nothing here is imported by the daemon: torch and transformers are loaded lazily
inside the export path.
"""
