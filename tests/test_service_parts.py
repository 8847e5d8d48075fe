"""The service's small parts on their own: the fan-out, the switch store, the hot path.

Why: each holds one rule of the architecture. A failing sink must not silence the
others (a broken MQTT connection must not stop the log); ``enabled`` has one owner
whose rules (a stored switch beats the config, a config edit beats the stored
switch) survive restarts; the per-window modules must stay free of the config
machinery (pydantic, ruamel) and of torch.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from listener.detect.detector import DetectorResult
from listener.service.sinks import FanOut
from listener.service.state_files import StateDir
from listener.service.switches import SwitchStore


class Recorder:
    def __init__(self) -> None:
        self.results: list[DetectorResult] = []
        self.closed = False

    def on_result(self, result: DetectorResult) -> None:
        self.results.append(result)

    def close(self) -> None:
        self.closed = True


class Broken(Recorder):
    def on_result(self, result: DetectorResult) -> None:
        raise OSError("disk full")

    def close(self) -> None:
        raise OSError("still full")


def test_fanout_isolates_a_failing_sink_and_counts_it() -> None:
    broken, good = Broken(), Recorder()
    fan = FanOut([broken, good])
    results = [DetectorResult(None, ()) for _ in range(3)]
    with capture_logs() as logs:
        for r in results:
            fan.on_result(r)
        fan.close()
    assert good.results == results and good.closed
    assert fan.failures["Broken"] == 3
    errors = [e for e in logs if e["log_level"] == "error"]
    # one error with the traceback for the kind of failure, then quiet; one for close
    assert [e["event"] for e in errors] == ["sink failed; the other sinks go on",
                                            "sink failed to close"]


def test_fanout_for_commands_lets_the_error_through() -> None:
    fan = FanOut([Broken(), Recorder()], isolate=False)
    with pytest.raises(OSError, match="disk full"):
        fan.on_result(DetectorResult(None, ()))


def test_switch_store_rules_and_persistence(tmp_path: Path) -> None:
    path = StateDir(tmp_path).switches
    store = SwitchStore(path, {"dog": True, "bell": False})
    assert store.snapshot() == {"dog": True, "bell": False}
    old = os.umask(0o022)
    try:
        assert store.set("dog", False) is True and store.set("dog", False) is False
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"dog": {"enabled": False, "config": True}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # private whatever the umask
    with pytest.raises(KeyError, match="unknown trigger 'cat'; triggers: dog, bell"):
        store.set("cat", True)

    # a restart: the stored choice beats the config's enabled
    store = SwitchStore(path, {"dog": True, "bell": False})
    assert store.enabled("dog") is False
    # a reload that leaves dog's config alone keeps the choice; a new trigger uses its config
    assert store.reload({"dog": True, "bell": False, "cat": True}) == {"cat": True}
    assert store.enabled("dog") is False
    # editing dog's `enabled` in the config is the newer decision: the stored choice goes
    assert store.reload({"dog": False, "bell": False, "cat": True}) == {}
    assert store.reload({"dog": True, "bell": False, "cat": True}) == {"dog": True}
    assert json.loads(path.read_text()) == {}
    # removed triggers are unknown; in-memory stores write nothing
    store.reload({"bell": False})
    assert store.names() == ["bell"] and not store.enabled("dog")
    memory = SwitchStore(None, {"dog": True})
    memory.set("dog", False)
    assert memory.snapshot() == {"dog": False} and not list(tmp_path.glob("*.tmp"))


def test_config_edited_while_stopped_also_beats_the_stored_switch(tmp_path: Path) -> None:
    path = StateDir(tmp_path).switches
    SwitchStore(path, {"dog": True, "bell": True}).set("dog", False)
    SwitchStore(path, {"dog": True, "bell": True}).set("bell", False)
    # next start: dog's `enabled` was edited to false meanwhile, bell's was not
    store = SwitchStore(path, {"dog": False, "bell": True})
    assert store.snapshot() == {"dog": False, "bell": False}
    assert json.loads(path.read_text()) == {"bell": {"enabled": False, "config": True}}
    store.set("dog", True)  # switched on again over MQTT: remembered against the new config
    assert SwitchStore(path, {"dog": False, "bell": True}).enabled("dog") is True
    # a file from an older listener (plain booleans) keeps its choices
    path.write_text('{"dog": false}')
    assert SwitchStore(path, {"dog": True, "bell": True}).enabled("dog") is False


def test_unreadable_switch_file_falls_back_to_the_config(tmp_path: Path) -> None:
    path = StateDir(tmp_path).switches
    path.write_text("{not json")
    with capture_logs() as logs:
        store = SwitchStore(path, {"dog": True})
    assert store.snapshot() == {"dog": True}
    assert [e["log_level"] for e in logs] == ["warning"]


def test_per_window_modules_import_no_config_machinery_or_torch() -> None:
    code = (
        "import sys, listener.detect.detector, listener.detect.hysteresis, "
        "listener.detect.triggers, listener.audio.level, listener.audio.ringbuffer; "
        "bad = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'pydantic', 'ruamel', 'torch', 'transformers', 'paho', 'onnxruntime'}); "
        "print(' '.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == ""
