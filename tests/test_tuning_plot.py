"""`scan --plot`: a valid PNG of the expected size, one panel per trigger plus the level."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from listener.detect.events import Event, ScoreLine
from listener.detect.hysteresis import Hysteresis
from listener.detect.settings import TriggerSettings
from listener.errors import MissingExtraError
from listener.tuning.plot import plot_recording
from listener.tuning.recorder import ScoreRecorder

SETTINGS = {
    "smoke_alarm": TriggerSettings(0.30, 0.25, 2, 2.0, 5.0, 0.05),
    "doorbell": TriggerSettings(0.35, 0.30, 1, 2.0, 5.0, 0.05),
    "kettle": TriggerSettings(0.40, 0.35, 1, 2.0, 5.0, 0.05),
}


def _recording():
    """60 one-second hops through the real hysteresis: one smoke alarm, one doorbell."""
    rng = np.random.default_rng(0)
    rec = ScoreRecorder()
    hyst = {k: Hysteresis(v) for k, v in SETTINGS.items()}
    for i in range(60):
        scores = {
            "smoke_alarm": 0.1 + 0.03 * rng.standard_normal() + (0.3 if 20 <= i < 30 else 0),
            "doorbell": 0.15 + 0.03 * rng.standard_normal() + (0.3 if 40 <= i < 43 else 0),
            "kettle": 0.12 + 0.02 * rng.standard_normal(),
        }
        events = []
        for name, h in hyst.items():
            tr = h.update(i - 9.0, i + 1.0, scores[name], margin_ok=True)
            if tr is not None:
                events.append(Event(tr.kind, "id", name, tr.score, tr.peak, "p",
                                    tr.window.start, tr.window.end, "", "m"))
        rec.record(ScoreLine(i - 9.0, i + 1.0, -40 + 5 * np.sin(i / 5), scores),
                   {k: h.active for k, h in hyst.items()}, events)
    return rec.recording()


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    return struct.unpack(">II", data[16:24])


def test_plot_is_png_of_expected_size_with_one_panel_per_trigger(tmp_path: Path) -> None:
    rec = _recording()
    assert sum(e.type == "start" for e in rec.events) == 2
    out = tmp_path / "scan.png"
    res = plot_recording(rec, out, SETTINGS, "listener scan: kitchen.wav", gate_dbfs=-70.0)
    assert res.trigger_panels == 3
    assert res.axes == 4  # + the level track
    assert _png_size(out) == (res.width_px, res.height_px) == (1200, 80 + 3 * 180 + 130 + 50)
    assert out.stat().st_size > 20_000  # drawn, not blank

    one = plot_recording(rec, tmp_path / "one.png", SETTINGS, "t", triggers=["doorbell"],
                         width_px=900)
    assert (one.trigger_panels, one.axes) == (1, 2)
    assert _png_size(tmp_path / "one.png") == (900, one.height_px)


def test_missing_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'listener\[plot\]'"):
        plot_recording(_recording(), tmp_path / "x.png", SETTINGS, "t")
    assert not (tmp_path / "x.png").exists()


def test_unwritable_output_is_a_user_error(tmp_path: Path) -> None:
    from listener.errors import UserError

    with pytest.raises(UserError, match="cannot write plot"):
        plot_recording(_recording(), tmp_path / "no" / "dir" / "x.png", SETTINGS, "t")


def test_scan_plot_end_to_end(hearing_model_dir: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    from listener.__main__ import main
    from listener.audio.decode import write_wav
    from tests.hearing import sounds
    from tests.helpers import assert_clean_error, run_main, write_config
    from tests.test_tuning_calibrate import E2E_OFF, E2E_ON

    audio, _ = sounds.stream([("alarm", 5.0), ("knocking", 14.0)], seconds=24.0,
                             seed=sounds.FRESH_SEED_BASE + 73_000, event_seconds=3.0)
    wav = tmp_path / "two.wav"
    write_wav(wav, audio)
    cfg = write_config(
        tmp_path, hearing_model_dir,
        [{"name": "smoke_alarm", "prompts": ["smoke alarm beeping"]},
         {"name": "knock", "prompts": ["someone knocking on the door"]},
         {"name": "siren", "prompts": ["a police car siren"]}],
        state_dir=tmp_path / "state",
        defaults={"on_threshold": E2E_ON, "off_threshold": E2E_OFF},
    )
    png = tmp_path / "out.png"
    assert main(["scan", str(wav), "--config", str(cfg), "--plot", str(png)]) == 0
    assert "START  smoke_alarm" in capsys.readouterr().out
    assert _png_size(png) == (1200, 80 + 3 * 180 + 130 + 50)

    # without matplotlib the flag fails at once with the install hint, exit 2, no traceback
    import unittest.mock

    with unittest.mock.patch.dict(sys.modules, {"matplotlib": None}):
        r = run_main(capsys, "scan", wav, "--config", cfg, "--plot", tmp_path / "no.png")
    assert_clean_error(r, "pip install 'listener[plot]'")
    assert not (tmp_path / "no.png").exists()
