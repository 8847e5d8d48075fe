"""Calibration: proposals that keep false starts within the budget, honest caveats, and a
config write that changes only the values it sets (everything else byte-for-byte)."""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from listener.__main__ import main
from listener.config.loader import load_config
from listener.config.writeback import write_thresholds
from listener.detect.settings import TriggerSettings
from listener.tuning.budget import DAY, Distribution
from listener.tuning.calibrate import GRID, Proposal, Stream, count_starts, propose, simulate
from listener.tuning.report import format_report
from tests.helpers import assert_clean_error, run_main

HOP = 1.0
CURRENT = TriggerSettings(
    on_threshold=0.20, off_threshold=0.15, on_windows=2, off_seconds=3.0,
    cooldown_seconds=10.0, margin=0.05,
)


def background(seconds: float, seed: int, mean: float = 0.15, sd: float = 0.04) -> Stream:
    """Background scores with a known distribution: stationary AR(1) Gaussian (rho 0.8),
    like a window sliding over slowly changing noise, plus rare louder moments."""
    rng = np.random.default_rng(seed)
    n = int(seconds / HOP)
    rho = 0.8
    e = rng.standard_normal(n) * sd * math.sqrt(1 - rho * rho)
    x = np.empty(n)
    x[0] = rng.standard_normal() * sd
    for i in range(1, n):
        x[i] = rho * x[i - 1] + e[i]
    bumps = rng.random(n) < 0.002  # a door, a cough: short excursions
    x[bumps] += rng.uniform(0.05, 0.15, bumps.sum())
    ends = np.arange(1, n + 1) * HOP
    return Stream(ends - 10.0, ends, np.clip(mean + x, -1, 1))


def test_distribution_matches_numpy() -> None:
    st = background(3600, seed=1)
    d = Distribution.of(st.scores)
    p50, p90, p99 = np.percentile(st.scores, [50, 90, 99])
    assert d.windows == 3600
    assert (d.p50, d.p90, d.p99, d.max) == pytest.approx((p50, p90, p99, st.scores.max()))
    # the generator's known distribution: mean 0.15, sd ~0.04 (+ rare bumps)
    assert d.p50 == pytest.approx(0.15, abs=0.01)
    assert d.p90 == pytest.approx(0.15 + 1.2816 * 0.04, abs=0.015)


def test_proposal_keeps_false_starts_within_budget_on_rescan() -> None:
    seconds, rate = 6 * 3600.0, 48.0  # budget: 48/day * 0.25 day = 12 false starts
    train = background(seconds, seed=7)
    assert count_starts(train, CURRENT) > 12, "the current settings must be too sensitive"
    p = propose("smoke_alarm", [train], CURRENT, HOP, rate_per_day=rate, margin=0.02)
    assert p.budget_starts == pytest.approx(12.0)
    assert p.allowed_starts == 12
    assert p.caveat is None
    n = p.proposed
    assert n.off_threshold <= n.on_threshold
    assert n.on_threshold - n.off_threshold == pytest.approx(0.05)  # user's gap kept
    assert (n.off_seconds, n.cooldown_seconds) == (CURRENT.off_seconds, CURRENT.cooldown_seconds)
    # scanning the same background again with the proposal: within budget
    assert count_starts(train, n) == p.starts_proposed <= 12
    # and a fresh stretch of the same background (another seed): still within budget
    fresh = background(seconds, seed=8)
    assert count_starts(fresh, n) <= 12
    # not needlessly deaf: without the margin, one grid step lower breaks the budget for
    # the chosen on_windows, and the proposal is well below the loudest background window
    tighter = replace(n, on_threshold=round(n.on_threshold - 0.02 - GRID, 3),
                      off_threshold=round(n.off_threshold - 0.02 - GRID, 3))
    assert count_starts(train, tighter) > 12
    assert n.on_threshold < p.distribution.max
    assert p.rate_bound_per_day < 2 * rate


def test_a_trigger_stuck_on_background_is_not_a_fit() -> None:
    """Few starts but always on (threshold under the background) must not pass as quiet."""
    quiet, fridge = background(3 * 3600.0, seed=9), background(3 * 3600.0, seed=10, mean=0.6)
    st = Stream(np.concatenate([quiet.starts, fridge.starts + 3 * 3600.0]),
                np.concatenate([quiet.ends, fridge.ends + 3 * 3600.0]),
                np.concatenate([quiet.scores, fridge.scores]))  # a fridge hums for 3 h
    low = replace(CURRENT, on_threshold=0.45, off_threshold=0.40)
    assert simulate(st, low)[0] == 1  # starts once when the fridge starts, never ends
    p = propose("hum", [st], CURRENT, HOP, rate_per_day=48.0)
    starts, on_windows = simulate(st, p.proposed)
    assert starts <= 12
    assert on_windows * HOP <= 12 * 30.0  # false starts end; the trigger stays usable
    assert p.proposed.on_threshold > p.distribution.p90
    assert p.proposed.off_threshold >= min(p.distribution.p90, p.proposed.on_threshold - 0.02)


def test_zero_budget_and_multiple_streams() -> None:
    streams = [background(1800, seed=s) for s in (3, 4, 5)]
    p = propose("doorbell", streams, CURRENT, HOP, rate_per_day=1.0)
    assert p.observed_seconds == pytest.approx(5400)
    assert p.allowed_starts == 0
    assert sum(count_starts(st, p.proposed) for st in streams) == 0 == p.starts_proposed


def test_short_recording_gets_a_caveat_and_margin_above_max() -> None:
    st = background(600, seed=11)  # 10 minutes against 1 false start per day
    p = propose("smoke_alarm", [st], CURRENT, HOP, rate_per_day=1.0, margin=0.02)
    assert p.caveat is not None
    assert "10.0 min" in p.caveat and "cannot show the rate" in p.caveat
    assert "3.0 days" in p.caveat  # rule of three: 3 / R days for a 95% statement
    assert p.proposed.on_threshold >= st.scores.max() + 0.05 - 1e-9
    assert p.starts_proposed == 0
    assert p.rate_bound_per_day == pytest.approx(3.0 / (600 / DAY))
    report = format_report([p], 1.0)
    assert "caveat (smoke_alarm): only 10.0 min of background" in report
    assert re.search(r"^  - name: smoke_alarm\n    on_threshold: 0\.\d+\n    off_threshold: "
                     r"0\.\d+\n    on_windows: \d\n", report, re.M)


CONFIG = """\
# Kitchen listener -- tuned by hand, keep my notes!
model:
  dir: models/clap   # exported model
  threads: 2

defaults:
  on_threshold: 0.30    # global
  off_threshold: 0.25

background: ["room tone", 'fridge hum']

triggers:
  # smoke alarm: must never miss
  - name: smoke_alarm      # the important one
    label: "Smoke alarm"
    prompts:
      - smoke alarm beeping   # wording from the manual
      - "a loud repeated beep"
    on_threshold:   0.35  # raised after the microwave fired it
    off_threshold: .3
    on_windows: 2

  - name: doorbell
    prompts: [a doorbell ringing]
    cooldown_seconds: 20   # unrelated key, untouched

  - name: kettle
    prompts: [a whistling kettle]

mqtt:
  host: broker.local   # in the hall closet
  enabled: false
"""


def _proposal(name: str, on: float, off: float, k: int) -> Proposal:
    cur = CURRENT
    new = replace(cur, on_threshold=on, off_threshold=off, on_windows=k)
    return Proposal(name, cur, new, Distribution.of(np.zeros(3)), 3.0, 0.0, 0, 0, 0, 1.0, None)


def test_write_keeps_everything_else_byte_for_byte(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    os.chmod(cfg, 0o640)
    props = [_proposal("smoke_alarm", 0.415, 0.365, 3), _proposal("doorbell", 0.4, 0.35, 1)]
    backup = write_thresholds(cfg, props, now=1_790_000_000.0)

    assert backup.name == "config.yaml.bak-20260921T141320Z"
    assert backup.read_bytes() == CONFIG.encode()
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o640
    new = cfg.read_text(encoding="utf-8")
    old_lines, new_lines = CONFIG.splitlines(keepends=True), new.splitlines(keepends=True)
    # smoke_alarm had all three keys: only their values changed, on the same lines
    expected = list(old_lines)
    j = old_lines.index("    on_threshold:   0.35  # raised after the microwave fired it\n")
    assert old_lines[j + 1 : j + 3] == ["    off_threshold: .3\n", "    on_windows: 2\n"]
    expected[j] = "    on_threshold:   0.415  # raised after the microwave fired it\n"
    expected[j + 1] = "    off_threshold: 0.365\n"
    expected[j + 2] = "    on_windows: 3\n"
    # doorbell had none: three lines inserted right after its name line, same indentation
    i = old_lines.index("  - name: doorbell\n") + 1
    expected[i:i] = ["    on_threshold: 0.4\n", "    off_threshold: 0.35\n", "    on_windows: 1\n"]
    assert new_lines == expected
    # the kettle (not calibrated) and every other byte: identical
    loaded = load_config(cfg, check_files=False).config
    s = {t.name: loaded.trigger_settings(t) for t in loaded.triggers}
    assert (s["smoke_alarm"].on_threshold, s["smoke_alarm"].off_threshold,
            s["smoke_alarm"].on_windows) == (0.415, 0.365, 3)
    assert (s["doorbell"].on_threshold, s["doorbell"].on_windows) == (0.4, 1)
    assert s["doorbell"].cooldown_seconds == 20
    assert s["kettle"].on_threshold == 0.30


def test_write_keeps_crlf_and_rejects_unknown_trigger(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    crlf = CONFIG.replace("\n", "\r\n")
    cfg.write_bytes(crlf.encode())
    write_thresholds(cfg, [_proposal("kettle", 0.5, 0.45, 2)], now=0.0)
    out = cfg.read_bytes().decode()
    assert out.count("\r\n") == crlf.count("\r\n") + 3
    assert "\n" not in out.replace("\r\n", "")
    assert "  - name: kettle\r\n    on_threshold: 0.5\r\n    off_threshold: 0.45\r\n" in out
    before = cfg.read_bytes()
    from listener.errors import ConfigError

    with pytest.raises(ConfigError, match="no trigger named 'nope'"):
        write_thresholds(cfg, [_proposal("nope", 0.5, 0.45, 2)])
    assert cfg.read_bytes() == before


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG, encoding="utf-8")
    r = run_main(capsys, "calibrate", "--config", cfg, "--seconds", "5",
                 "--false-alarms-per-day", "-1")
    assert_clean_error(r, "--false-alarms-per-day must be 0 or more, got -1.0")
    with pytest.raises(SystemExit) as exc:  # argparse: one of --seconds/--from is required
        main(["calibrate", "--config", str(cfg)])
    assert exc.value.code == 2


# --- end to end: the real pipeline and the model that hears ---------------------------------

# Deliberately over-sensitive starting thresholds (any positive match fires).
E2E_ON, E2E_OFF = 0.05, 0.02

E2E_CONFIG = """\
# calibration target: thresholds far too sensitive for this room
model:
  dir: {model}   # the small test model that hears
state_dir: {state}
defaults:
  on_threshold: {on}
  off_threshold: {off}
  on_windows: 1
  off_seconds: 1
  cooldown_seconds: 2
triggers:
  - name: smoke_alarm   # the one that fires on the fridge
    prompts: ["smoke alarm beeping"]
  - name: knock
    prompts:
      - someone knocking on the door
    on_windows: 1   # keep
mqtt:
  enabled: false   # untouched
"""


def _starts(out: str) -> dict[str, int]:
    import json

    n: dict[str, int] = {}
    for line in out.splitlines():
        if line.startswith("{"):
            d = json.loads(line)
            if d["type"] == "start":
                n[d["trigger"]] = n.get(d["trigger"], 0) + 1
    return n


def _write_background(tmp_path: Path) -> list[Path]:
    """Two 40-s WAVs of ordinary background: room noise of three kinds and a humming
    fridge, none of the target sounds."""
    from listener.audio.decode import write_wav
    from tests.hearing import sounds

    seed = sounds.FRESH_SEED_BASE + 71_000
    parts = [sounds.background(20.0, seed + i, level_dbfs=lv)
             for i, lv in enumerate((-55.0, -45.0, -38.0))]
    hum = sounds.render("hum", seed + 9, duration=20.0, level_dbfs=-40.0)
    bg_a = np.concatenate(parts[:2])
    bg_b = np.concatenate([parts[2], hum + sounds.background(20.0, seed + 5, -55.0)])
    files = [tmp_path / "room_a.wav", tmp_path / "room_b.wav"]
    for f, x in zip(files, (bg_a, bg_b), strict=True):
        write_wav(f, x)
    return files


def test_calibrate_end_to_end_then_rescan_stays_within_budget(
    hearing_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _write_background(tmp_path)
    cfg = tmp_path / "config.yaml"
    original = E2E_CONFIG.format(model=hearing_model_dir, state=tmp_path / "state",
                                 on=E2E_ON, off=E2E_OFF)
    cfg.write_text(original)

    def scan_starts() -> dict[str, int]:
        total: dict[str, int] = {}
        for f in files:
            assert main(["scan", str(f), "--config", str(cfg), "--jsonl"]) == 0
            for k, v in _starts(capsys.readouterr().out).items():
                total[k] = total.get(k, 0) + v
        return total

    def other_lines(text: str) -> list[str]:
        return [ln for ln in text.splitlines()
                if not re.match(r"\s*(on_threshold|off_threshold|on_windows):", ln)]

    # a budget the 80 s can speak to: 5400/day * 80 s = 5 false starts per trigger
    code = main(["calibrate", "--config", str(cfg), "--from", *map(str, files),
                 "--false-alarms-per-day", "5400", "--write"])
    out = capsys.readouterr().out
    assert code == 0
    assert "background observed: 80 s (80 windows); budget 5400 false start(s)/day = 5 " in out
    assert "caveat (smoke_alarm)" not in out
    # knock's background scores sit far below its (already low) threshold: background alone
    # never lowers a threshold, it says so instead
    assert "caveat (knock): the background never came near the current on_threshold 0.05" in out
    assert other_lines(cfg.read_text()) == other_lines(original)
    rescan = scan_starts()
    assert all(n <= 5 for n in rescan.values()), rescan

    # the default budget (1/day) on 80 s: a caveat, thresholds above the loudest window
    code = main(["calibrate", "--config", str(cfg), "--from", *map(str, files), "--write"])
    out = capsys.readouterr().out
    assert code == 0
    assert "caveat (smoke_alarm, knock): only 80 s of background" in out  # one for both
    table = {m[0]: (float(m[1]), float(m[2])) for m in re.findall(
        r"^(smoke_alarm|knock) +[-\d.]+ +[-\d.]+ +[-\d.]+ +([-\d.]+) \|.*\| +([\d.]+)/",
        out, re.M)}
    assert set(table) == {"smoke_alarm", "knock"}
    for name, (mx, proposed_on) in table.items():  # margin above the loudest background
        assert proposed_on >= min(1.0, mx + 0.05) - 1e-3, (name, mx, proposed_on)
    assert "cannot show the rate" in out
    assert "wrote " in out and ".bak-" in out
    backups = sorted(tmp_path.glob("config.yaml.bak-*"))
    assert len(backups) == 2 and original in {b.read_text() for b in backups}
    assert other_lines(cfg.read_text()) == other_lines(original)
    assert sum(scan_starts().values()) == 0
