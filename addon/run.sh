#!/bin/sh
# Add-on start: options + the Supervisor's MQTT broker -> /data/config.yaml, checked, then
# `listener run`. All of it is listener/addon.py (tested outside the container).
exec python3 -m listener.addon "$@"
