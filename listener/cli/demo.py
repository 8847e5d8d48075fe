"""`listener demo`: the real daemon on a shipped model and sample, no internet, no microphone.

A first run that shows listener working, also on a machine that cannot
pull a model or has no microphone. The demo runs the same Daemon as `listener run`
(model stack, detector, sinks, MQTT with its spool) on what ships inside the package,
``listener/assets/demo/``: the small test model (tests/assets/hearing_model, int8
towers only; it knows 10 generated sounds, not real ones; its listener.json recommends
its own thresholds), a 30-s sample made of sounds it knows (an alarm at 2 s, a knock at
12 s, a siren at 22 s; ``script/make-demo`` made it) and the config in
``config.yaml`` there. Events are printed as they are decided. If an MQTT broker answers
on the host of your config (``-c``, else the usual search, else localhost:1883), the
events are published too, as device ``listener_demo``, so they do not mix with your own
device. It plays the sample once, in real time (``--fast``: as fast as it can), and exits 0.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from pathlib import Path

from listener.cli import add_command, add_config_option, doc_body

DEMO_DIR = Path(__file__).resolve().parent.parent / "assets" / "demo"
DEMO_DEVICE = "listener_demo"
BANNER = ("demo: a small test model that knows 10 generated sounds; for real sounds run "
          "`listener model pull` on a machine with internet")
PROBE_SECONDS = 1.0


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "demo", help="run the daemon on a shipped test model and sample "
                    "(no internet, no microphone needed)", description=doc_body(__doc__),
                    func=run)
    add_config_option(p, "config whose mqtt: section says where to publish (optional)")
    p.add_argument("--fast", action="store_true",
                   help="play the sample as fast as possible (default: in real time)")
    p.add_argument("--no-mqtt", action="store_true", help="do not publish, even if a broker "
                   "answers")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   default="warning", help="daemon log level (default: warning)")


def broker_answers(host: str, port: int, timeout: float = PROBE_SECONDS) -> bool:
    """True when something accepts a TCP connection on host:port within ``timeout``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _user_mqtt(config: str | None):  # -> MqttConfig | None
    """The mqtt section of the user's config: ``--config`` (must be valid), else the usual
    search (ignored when absent or invalid), else None."""
    from listener.config.loader import find_config, load_config
    from listener.errors import ConfigError

    if config is None:
        try:
            find_config(None)
        except ConfigError:  # no config anywhere: a first run, nothing to report
            return None
    try:
        return load_config(config, check_model=False).config.mqtt
    except ConfigError:
        if config is not None:
            raise
        print("demo: your config has problems (`listener check-config`); publishing to "
              "localhost if a broker answers", file=sys.stderr)
        return None


def demo_config(state: Path, fast: bool, mqtt: object | None):  # -> LoadedConfig
    """The shipped demo config with its state in ``state`` and MQTT as given (or off)."""
    from listener.config.loader import parse_config

    path = DEMO_DIR / "config.yaml"
    loaded = parse_config(path.read_text(encoding="utf-8"), where=str(path), base=DEMO_DIR)
    loaded.path = path
    cfg = loaded.config
    cfg.state_dir = state
    cfg.source.realtime = not fast
    if mqtt is not None:
        cfg.mqtt = mqtt.model_copy(update={  # type: ignore[attr-defined]
            "enabled": True, "device_id": DEMO_DEVICE, "device_name": "Listener demo",
            "client_id": None})
    return loaded


def _mqtt_plan(args: argparse.Namespace):  # -> MqttConfig | None
    """The user's broker settings if MQTT is on there and a broker answers, else None.
    The demo publishes as its own device and client id (``listener_demo``), so neither
    the user's entities nor the running daemon's broker session are touched."""
    from listener.config.schema import MqttConfig

    if args.no_mqtt:
        return None
    mqtt = _user_mqtt(args.config) or MqttConfig()
    if not mqtt.enabled:
        print("demo: MQTT is off in your config; events are printed only")
        return None
    where = f"{mqtt.host}:{mqtt.port}"
    if broker_answers(mqtt.host, mqtt.port):
        print(f"demo: publishing to the MQTT broker at {where} as device {DEMO_DEVICE}")
        return mqtt
    print(f"demo: no MQTT broker answers at {where}; events are printed only")
    return None


def run(args: argparse.Namespace) -> int:
    from listener.cli.scan import ScanSink
    from listener.logs import setup_logging
    from listener.service.daemon import Daemon

    print(BANNER)
    print("demo: playing a 30-s sample (an alarm at 2 s, a knock at 12 s, a siren at 22 s) "
          f"{'as fast as possible' if args.fast else 'in real time'}; triggers: smoke_alarm, "
          "door_knock, siren", flush=True)
    mqtt = _mqtt_plan(args)
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="listener-demo-") as tmp:
        loaded = demo_config(Path(tmp), args.fast, mqtt)
        setup_logging(args.log_level, "console")
        daemon = Daemon(loaded, log_level=args.log_level)
        printer = ScanSink(sys.stdout, jsonl=False, scores=False, flush=True)
        daemon.sinks.add(printer)
        code = daemon.run()
    starts = sum(1 for e in printer.events if e.type == "start")
    print(f"demo: {starts} event(s) heard. Next: `listener model pull` (needs internet), "
          "then `listener run -c FILE` (config.example.yaml documents every key)")
    return code
