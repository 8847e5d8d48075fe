"""Running it: pipeline loops, sinks, clips, switches, systemd notify and the daemon."""
