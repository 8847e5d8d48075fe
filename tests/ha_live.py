"""listener against a real Home Assistant (not part of the test suite: it needs a Python
with ``homeassistant`` and its frontend; script/check-ha sets one up).

    python -m tests.ha_live --hass /path/to/venv/bin/hass

Starts a mosquitto and Home Assistant (MQTT integration configured, README's two
automations counting instead of notifying), then drives a real MqttPublisher:

1. discovery forms: entity -> device -> entity keeps every entity registry entry
   (registry id and entity id), and a removed trigger's entities go;
2. README's automations: across Home Assistant and listener restarts, with events right
   at reconnection and later, each real start counts once and no comeback counts.

Prints what it saw; exit 1 when something differs.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from listener.config.schema import MqttConfig
from tests.fixtures_broker import Mosquitto
from tests.mqtt_driver import Feed, make_pair, publisher

README = Path(__file__).resolve().parents[1] / "README.md"
ENTRY = {"entry_id": "01JLISTENERLIVECHECK000000", "version": 1, "minor_version": 2,
         "domain": "mqtt", "title": "mqtt", "options": {}, "pref_disable_new_entities": False,
         "pref_disable_polling": False, "source": "user", "unique_id": None,
         "disabled_by": None, "created_at": "2026-01-01T00:00:00+00:00",
         "modified_at": "2026-01-01T00:00:00+00:00", "discovery_keys": {}, "subentries": []}


def readme_automations() -> list[dict[str, Any]]:
    """README's automations, each counting into counter.<n> instead of notifying."""
    section = README.read_text(encoding="utf-8").split("## Home Assistant\n", 1)[1]
    out = []
    for n, block in enumerate(re.findall(r"```yaml\n(.*?)```", section, re.S)):
        (auto,) = yaml.safe_load(block)["automation"]
        key = "actions" if "actions" in auto else "action"
        verb = "action" if key == "actions" else "service"
        auto[key] = [{verb: "counter.increment", "target": {"entity_id": f"counter.readme_{n}"}}]
        auto["alias"] = f"readme_{n}"
        text = yaml.safe_dump(auto).replace("event.listener_smoke_alarm_event",
                                            "event.listener_smoke_event")
        out.append(yaml.safe_load(text))
    return out


class Live:
    def __init__(self, root: Path, hass: str) -> None:
        self.root, self.hass = root, hass
        self.broker = Mosquitto(root / "broker")
        self.broker.start()
        self.config, self.state = root / "ha", root / "listener-state"
        (self.config / ".storage").mkdir(parents=True)
        self.state.mkdir()
        autos = readme_automations()
        (self.config / "configuration.yaml").write_text(yaml.safe_dump({
            "homeassistant": {"name": "live", "latitude": 0, "longitude": 0, "elevation": 0,
                              "unit_system": "metric", "time_zone": "UTC"},
            "logger": {"default": "warning",  # the client's info line says it connected
                       "logs": {"homeassistant.components.mqtt.client": "info"}},
            "counter": {f"readme_{n}": {"initial": 0} for n in range(len(autos))},
            "automation": autos}))
        entry = {**ENTRY, "data": {"broker": "127.0.0.1", "port": self.broker.port}}
        (self.config / ".storage" / "core.config_entries").write_text(json.dumps(
            {"version": 1, "minor_version": 5, "key": "core.config_entries",
             "data": {"entries": [entry]}}))
        self.sessions = 0

    def session(self, steps: list[tuple[str, list[str], str]]) -> None:
        """Start Home Assistant, run listener once per step (form, triggers, event: now,
        late or none), stop Home Assistant (it saves its registries)."""
        self.sessions += 1
        log = self.root / f"hass{self.sessions}.log"
        with open(log, "w") as out:
            ha = subprocess.Popen([self.hass, "-c", str(self.config), "--skip-pip"],
                                  stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while "birth message sent" not in log.read_text(errors="replace"):
                if ha.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"Home Assistant did not connect:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            time.sleep(2)
            for form, names, event in steps:
                self.listener(form, names, event)
        finally:
            ha.send_signal(signal.SIGTERM)
            ha.wait(120)

    def listener(self, form: str, names: list[str], event: str) -> None:
        cfg = MqttConfig(host="127.0.0.1", port=self.broker.port, device_id="kitchen",
                         device_name="Listener", discovery={"form": form})
        sink = publisher(cfg, names, self.state, "clap-int8")
        feed = Feed(names)
        sink.on_result(feed.snapshot())
        sink.start()
        deadline = time.monotonic() + 10
        while not sink.connected and time.monotonic() < deadline:
            time.sleep(0.05)
        if event == "late":
            time.sleep(3)
        if event in ("now", "late"):
            sink.on_result(feed.events(make_pair(names[0], 0.0)[0]))
        sink.flush(5)
        time.sleep(2)  # Home Assistant handles it before listener goes offline
        sink.close()
        time.sleep(1)

    def registry(self) -> dict[str, tuple[str, str]]:
        data = json.loads((self.config / ".storage" / "core.entity_registry").read_text())
        return {e["unique_id"]: (e["entity_id"], e["id"]) for e in data["data"]["entities"]
                if e["platform"] == "mqtt"}

    def counters(self) -> dict[str, int]:
        data = json.loads((self.config / ".storage" / "core.restore_state").read_text())
        return {s["state"]["entity_id"]: int(float(s["state"]["state"])) for s in data["data"]
                if s["state"]["entity_id"].startswith("counter.")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hass", required=True, help="the hass executable to run")
    args = ap.parse_args()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="listener-ha-live-") as tmp:
        live = Live(Path(tmp), args.hass)
        try:
            live.session([("entity", ["smoke", "glass"], "none")])
            first = live.registry()
            print(f"entity form: {len(first)} entities")
            live.session([("device", ["smoke", "glass"], "none")])
            if live.registry() != first:
                problems.append("entity -> device changed the entity registry")
            live.session([("device", ["smoke"], "none"), ("entity", ["smoke"], "none")])
            now = live.registry()
            gone = sorted(set(first) - set(now))
            print(f"after device form, glass removed, back to entity form: {len(now)} "
                  f"entities, removed {gone}")
            if any(first[k] != v for k, v in now.items()) or set(now) - set(first):
                problems.append("a kept entity changed in the registry")
            if [g for g in gone if "glass" not in g]:
                problems.append(f"entities removed that should stay: {gone}")
            live.session([("device", ["smoke"], e) for e in ("late", "none", "now", "none")])
            live.session([("device", ["smoke"], e) for e in ("none", "now")])
            counts = live.counters()
            print(f"README automations after 3 real starts and 5 comebacks: {counts}")
            if not counts or any(v != 3 for v in counts.values()):
                problems.append(f"README automations counted {counts}, expected 3 each")
        finally:
            live.broker.stop()
    print("\n".join(problems) or "no problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
