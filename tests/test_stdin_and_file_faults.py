"""Faults of the audio input, end to end: a wild block on stdin, stdin written faster
than real time, a truncated file source.

`listener run` is a real subprocess (MQTT off, JSON log lines on stderr) fed through a
real pipe; the window counts come from the pipeline over a real pipe whose writer is a
real ``cat`` process. The model is the tiny random export: these tests count windows and
samples, they do not need to hear anything.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from listener.audio.sources import StdinSource
from listener.config.schema import Config
from listener.service.assemble import build_pipeline, make_source
from tests.helpers import assert_no_traceback, cli_env, config_data, python_m, write_config

SR = 48000
TRIGGERS = [{"name": "t", "prompts": ["a dog barking"]}]


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """-30 dBFS white noise: well above the level gate, so every window is scored."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    return (0.03 * x).astype(np.float32)


def run_daemon(d: Path, model: Path, source: dict[str, Any], data: bytes = b"",
               ) -> tuple[int, list[dict[str, Any]], str]:
    """`listener run` in ``d`` on ``source`` (MQTT off) to its end, ``data`` on its stdin:
    (exit code, JSON log lines, stderr)."""
    write_config(d, model, TRIGGERS, source=source, mqtt={"enabled": False},
                 model={"precision": "int8", "threads": 1}, logging={"level": "info"},
                 state_dir="state")
    r = subprocess.run(python_m("listener", "run", "--config", "config.yaml"), cwd=d,
                       env=cli_env(), input=data, capture_output=True, timeout=180)
    err = r.stderr.decode(errors="replace")
    lines = []
    for raw in err.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            lines.append({"event": raw})
    return r.returncode, lines, err


def s16le(x: np.ndarray) -> bytes:
    return (x * 32767).astype("<i2").tobytes()


def scan_stdin(tiny_model_dir: Path, tmp_path: Path, data: bytes, fmt: str = "s16le",
               realtime: bool = False) -> dict[str, Any]:
    """The pipeline over stdin PCM that a ``cat`` process writes into a real pipe as fast
    as it can; the pipeline's stats at the end of the stream."""
    raw = tmp_path / "stream.pcm"
    raw.write_bytes(data)
    cfg = Config.model_validate(config_data(
        tiny_model_dir, TRIGGERS, model={"precision": "int8", "threads": 1},
        source={"type": "stdin", "format": fmt, "realtime": realtime},
        state_dir=tmp_path / "state"))
    with subprocess.Popen(["cat", str(raw)], stdout=subprocess.PIPE) as cat:
        assert cat.stdout is not None
        source = make_source(cfg.source)
        assert isinstance(source, StdinSource)
        source.stream = cat.stdout  # instead of this process's own stdin
        pipe = build_pipeline(cfg, [], source=source)
        pipe.open()
        pipe.run(threading.Event())
        assert cat.wait(timeout=30) == 0
    return pipe.stats()


def test_a_wild_f32le_block_is_clipped_and_counted_not_fatal(tmp_path, tiny_model_dir):
    """One block of 1e30 in the middle of an f32le stream: the daemon warns once, keeps
    listening to the end of the stream (one window per hop) and exits 0."""
    x = noise(20.0)
    x[10 * SR : 10 * SR + 4800] = 1e30
    code, lines, err = run_daemon(tmp_path, tiny_model_dir,
                                  {"type": "stdin", "format": "f32le"}, x.tobytes())
    assert code == 0, err[-3000:]
    assert_no_traceback(err)
    warnings = [ln for ln in lines if ln.get("level") == "warning"]
    assert len(warnings) == 1, err[-3000:]
    assert warnings[0]["clipped"] == 4800 and warnings[0]["byte"] == 10 * SR * 4
    assert "source.format to s16le or s32le" in warnings[0]["event"]
    end = next(ln for ln in lines if ln.get("event") == "end of stream")
    assert end["windows"] == 20


def test_clipped_samples_are_counted_in_the_pipeline_stats(tiny_model_dir, tmp_path):
    x = noise(12.0)
    x[5 * SR : 5 * SR + 4800] = 1e30
    x[8 * SR : 8 * SR + 7] = -2.0
    st = scan_stdin(tiny_model_dir, tmp_path, x.tobytes(), fmt="f32le")
    assert (st["clipped_samples"], st["bad_samples"], st["windows"]) == (4807, 0, 12)


def test_stdin_faster_than_real_time_scores_every_window(tiny_model_dir, tmp_path):
    """60 s piped in a burst: one window per hop, none skipped (stdin is not live unless
    the config says so)."""
    st = scan_stdin(tiny_model_dir, tmp_path, s16le(noise(60.0)))
    assert (st["windows"], st["skipped_windows"], st["audio_seconds"]) == (60, 0, 60.0)


def test_live_stdin_counts_the_windows_it_skips(tiny_model_dir, tmp_path):
    """With source.realtime the newest audio wins: every hop is either scored or counted
    as skipped, and a 60-s burst is far faster than the tower, so some are skipped."""
    st = scan_stdin(tiny_model_dir, tmp_path, s16le(noise(60.0)), realtime=True)
    assert st["windows"] + st["skipped_windows"] == 60 and st["skipped_windows"] > 0
    assert st["audio_seconds"] == 60.0


def test_truncated_wav_file_source_is_logged_and_played_to_its_end(tmp_path, tiny_model_dir):
    """A file source whose WAV header announces 8 s but holds 3 s: a warning in the
    daemon log naming the file and both lengths; the 3 s are listened to."""
    import soundfile as sf

    path = tmp_path / "cut.wav"
    sf.write(path, noise(8.0), SR, subtype="PCM_16")
    path.write_bytes(path.read_bytes()[: 44 + 3 * SR * 2])
    code, lines, err = run_daemon(tmp_path, tiny_model_dir, {"type": "file", "path": str(path)})
    assert code == 0, err[-3000:]
    warn = next(ln for ln in lines if ln.get("level") == "warning")
    assert warn["file"] == str(path) and "is truncated" in warn["event"]
    assert (warn["seconds_read"], warn["seconds_announced"]) == (3.0, 8.0)
    assert next(ln for ln in lines if ln.get("event") == "end of stream")["windows"] == 3


def quiet_stdin_daemon(d: Path, model: Path, source: dict[str, Any], seconds: float,
                       wait_for: str, timeout: float = 60.0, **defaults: float) -> str:
    """`listener run` in ``d`` on stdin whose writer sends ``seconds`` of noise and then
    stays open without writing; once the log holds ``wait_for`` (bounded by ``timeout``)
    the daemon, still running, gets SIGTERM and must exit 0. Returns its log.

    The trigger is an example of the same noise (the random tower scores it about 1), so
    it starts on the first window."""
    import soundfile as sf

    sf.write(d / "ex.wav", noise(2.0, seed=1), SR)
    write_config(d, model, [{"name": "t", "examples": ["ex.wav"]}],
                 source=source, mqtt={"enabled": False},
                 model={"precision": "int8", "threads": 1}, logging={"level": "info"},
                 defaults={"on_threshold": 0.5, "off_threshold": 0.4, "on_windows": 1,
                           "margin": 0.0, **defaults},
                 state_dir="state")
    log = d / "daemon.log"
    with log.open("w") as err, subprocess.Popen(
        python_m("listener", "run", "--config", "config.yaml"), cwd=d, env=cli_env(),
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
    ) as proc:
        try:
            assert proc.stdin is not None
            proc.stdin.write(s16le(noise(seconds)))
            proc.stdin.flush()
            deadline = time.monotonic() + timeout
            while wait_for not in log.read_text() and proc.poll() is None:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            assert proc.poll() is None, log.read_text()[-3000:]  # still running
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    return log.read_text()


def test_sigterm_stops_the_daemon_while_the_stdin_writer_is_quiet(tmp_path, tiny_model_dir):
    """stdin is read window by window now, yet a writer that stays open without writing
    never hides a stop: SIGTERM ends `listener run` promptly with exit 0.

    The writer sends one hop of audio; the trigger starts on that only window, so once
    its start is logged the pipeline is back waiting for audio that does not come."""
    text = quiet_stdin_daemon(tmp_path, tiny_model_dir, {"type": "stdin"}, 1.0,
                              '"event start"')
    assert '"event end"' in text and '"stopped"' in text, text[-3000:]


def test_a_live_source_that_goes_quiet_ends_its_active_triggers(tmp_path, tiny_model_dir):
    """A live source (realtime stdin here; a dropped camera stream alike) that delivers
    nothing for NO_AUDIO_SECONDS ends the active trigger, reason ``no_audio``, while the
    writer stays open: the Home Assistant sensor does not stay on until audio returns
    (off_seconds is 60 s: nothing else could end it within the wait)."""
    from listener.service.pipeline import NO_AUDIO_SECONDS

    text = quiet_stdin_daemon(tmp_path, tiny_model_dir, {"type": "stdin", "realtime": True},
                              2.0, '"event end"', timeout=60 + NO_AUDIO_SECONDS,
                              off_seconds=60.0)
    lines = [json.loads(raw) for raw in text.splitlines() if raw.startswith("{")]
    starts = [ln for ln in lines if ln.get("event") == "event start"]
    ends = [ln for ln in lines if ln.get("event") == "event end"]
    assert len(starts) == 1 and len(ends) == 1, text[-3000:]
    assert ends[0].get("reason") == "no_audio", ends[0]
