"""listener: an open-vocabulary sound-event daemon for small Linux devices.

The packages read in the order the audio flows:

- ``audio``: sources (mic, file, stdin) -> 48 kHz mono -> ring buffer -> hop scheduler;
- ``model``: model directory, log-mel, the ONNX audio and text towers, prompt bank;
- ``detect``: trigger settings, scores against prompts, hysteresis, events, and the
  detector that owns every trigger's state;
- ``service``: wiring, the pipeline loop, sinks, clips, switches, commands, the daemon;
- ``mqtt``: topics, Home Assistant discovery, the client, the publisher and its spool;

plus ``config`` (schema, loader, write-back), ``tuning`` (top, calibrate, plot),
``export`` (exporter, pull, verify, bench) and ``cli`` (one module per command).
"""

__version__ = "0.1.0"
