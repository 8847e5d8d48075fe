"""Sources: file resampling (16 kHz mono, 44.1 kHz stereo), stdin PCM formats, the mic
callback contract (the hardware edge), NaN/inf sanitising, device selection."""

from __future__ import annotations

import io
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from listener.audio.mic import MicSource, resolve_device
from listener.audio.sources import FileSource, StdinSource
from listener.config.schema import SourceConfig
from listener.errors import AudioError
from listener.service.assemble import make_source

SR = 48000


def tone(rate: int, seconds: float, freq: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x] * channels, axis=1)


def peak_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * SR / len(x))


@pytest.fixture
def warnings_on_stderr(monkeypatch):
    """Audio warnings as a command prints them (``listener: warning: ...`` on stderr),
    whatever logging set-up an earlier in-process test left behind."""
    import structlog

    monkeypatch.setattr(structlog, "is_configured", lambda: False)


def collect(src) -> np.ndarray:
    src.open()
    blocks = list(src.blocks())
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    return np.concatenate(blocks)


@pytest.mark.parametrize(
    ("rate", "channels", "subtype"),
    [(16000, 1, "PCM_16"), (44100, 2, "PCM_16"), (48000, 2, "FLOAT")],
)
def test_file_source_resamples_to_48k_mono(tmp_path, rate, channels, subtype):
    path = tmp_path / f"t{rate}.{'flac' if subtype == 'PCM_16' and channels == 2 else 'wav'}"
    sf.write(path, tone(rate, 3.0, 1000.0, channels), rate, subtype=subtype)
    out = collect(FileSource(path, block_seconds=0.1))
    assert abs(out.size - 3 * SR) <= 2
    assert abs(peak_hz(out[SR // 2 : -SR // 2]) - 1000.0) < 2.0
    # amplitude survives downmix and resampling (stereo channels are identical)
    mid = out[SR : 2 * SR]
    assert abs(np.sqrt(np.mean(mid**2)) - 0.5 / np.sqrt(2)) < 0.01
    # streaming blocks equal whole-signal conversion up to resampler edge effects
    from listener.audio.decode import load_audio

    whole = load_audio(path)
    n = min(whole.size, out.size)
    assert np.max(np.abs(whole[SR : n - SR] - out[SR : n - SR])) < 1e-3


def test_file_source_stereo_is_averaged(tmp_path):
    x = np.stack([tone(44100, 1.0, 440.0), np.zeros(44100, np.float32)], axis=1)
    sf.write(tmp_path / "lr.wav", x, 44100)
    out = collect(FileSource(tmp_path / "lr.wav"))
    assert abs(np.max(np.abs(out[SR // 4 : -SR // 4])) - 0.25) < 0.01


def test_file_errors_are_clear(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        FileSource(tmp_path / "nope.wav").open()
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all" * 100)
    with pytest.raises(AudioError, match=r"cannot decode .*bad.wav"):
        FileSource(bad).open()
    with pytest.raises(AudioError, match="directory"):
        FileSource(tmp_path).open()


def test_file_nan_inf_sanitised_and_counted(tmp_path):
    x = tone(48000, 1.0, 500.0)
    x[100:110] = np.nan
    x[5000] = np.inf
    x[6000] = -np.inf
    sf.write(tmp_path / "nan.wav", x, 48000, subtype="FLOAT")
    src = FileSource(tmp_path / "nan.wav")
    out = collect(src)
    assert src.bad_samples == 12
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0


def truncated_wav(path, seconds: float, keep: float, rate: int = 48000, channels: int = 1):
    """A 16-bit WAV of ``seconds`` cut after ``keep`` seconds: the header still
    announces all of it (an interrupted copy)."""
    sf.write(path, tone(rate, seconds, 440.0, channels), rate, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: 44 + round(keep * rate) * 2 * channels])
    return path


def test_truncated_wav_is_read_as_far_as_it_goes_with_a_warning(
    tmp_path, capsys, warnings_on_stderr
):
    from listener.audio.decode import load_audio

    p = truncated_wav(tmp_path / "cut.wav", 4.0, 1.5, rate=16000, channels=2)
    out = collect(FileSource(p))
    assert abs(out.size - 1.5 * SR) <= 2
    err = capsys.readouterr().err
    assert err.count("listener: warning: ") == 1, err
    assert f"{p} is truncated" in err and "announces 4.00 s" in err and "after 1.50 s" in err
    assert abs(load_audio(p).size - 1.5 * SR) <= 2
    assert "announces 4.00 s" in capsys.readouterr().err
    # a complete file, and a WAV whose length a streaming writer left unknown: no warning
    sf.write(tmp_path / "ok.wav", tone(48000, 1.0, 440.0), 48000)
    collect(FileSource(tmp_path / "ok.wav"))
    streamed = bytearray((tmp_path / "ok.wav").read_bytes())
    streamed[40:44] = (0x7FFFFFFF).to_bytes(4, "little")  # arecord's "length unknown"
    (tmp_path / "streamed.wav").write_bytes(streamed)
    assert abs(load_audio(tmp_path / "streamed.wav").size - SR) <= 2
    assert capsys.readouterr().err == ""


def test_audio_file_without_samples_is_a_clear_error(tmp_path):
    from listener.audio.decode import load_audio

    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 48000)
    (tmp_path / "zero.flac").write_bytes(b"")
    for name in ("empty.wav", "zero.flac"):
        with pytest.raises(AudioError, match=rf"{name} has no audio samples"):
            FileSource(tmp_path / name).open()
        with pytest.raises(AudioError, match=rf"{name} has no audio samples"):
            load_audio(tmp_path / name)


@pytest.mark.parametrize(
    ("fmt", "dtype", "scale"),
    [("s16le", "<i2", 32767), ("s32le", "<i4", 2**31 - 1), ("f32le", "<f4", 1.0)],
)
def test_stdin_formats(fmt, dtype, scale):
    x = tone(16000, 2.0, 1000.0, channels=2)
    raw = (x * scale).astype(dtype).tobytes()
    src = StdinSource(fmt, rate=16000, channels=2, stream=io.BytesIO(raw))
    out = collect(src)
    assert abs(out.size - 2 * SR) <= 2
    assert abs(peak_hz(out[SR // 2 : -SR // 2]) - 1000.0) < 2.0
    assert abs(np.max(np.abs(out[SR // 2 : -SR // 2])) - 0.5) < 0.01


def test_stdin_wrong_format_is_a_clear_error():
    with pytest.raises(AudioError, match=r"unknown PCM format 'u8'.*s16le, s32le, f32le"):
        StdinSource("u8")
    # stereo s16 with an odd byte count: not whole frames
    with pytest.raises(AudioError, match="not a whole frame of s16le x 2"):
        collect(StdinSource("s16le", channels=2, stream=io.BytesIO(b"\x00" * 4001)))


def test_stdin_f32le_out_of_range_is_clipped_counted_and_warned_once(
    capsys, warnings_on_stderr
):
    """Integer PCM read as f32le (or one wild block) no longer ends the stream: the samples
    are clipped and counted, and the first such block gets the format hint, once."""
    x = tone(48000, 1.0, 300.0)
    x[4800:9600] = 1e30  # one wild block in the middle
    x[24000:24010] = 1.5  # a hot float writer: clipped and counted, no hint
    x[30000:30005] = -1e30  # a second wild stretch: counted, not warned again
    src = StdinSource("f32le", stream=io.BytesIO(x.astype("<f4").tobytes()))
    out = collect(src)
    assert out.size == 48000 and np.max(np.abs(out)) <= 1.0
    assert src.clipped_samples == 4800 + 10 + 5 and src.bad_samples == 0
    err = capsys.readouterr().err
    assert err.count("listener: warning: ") == 1, err
    assert "4800 f32le sample(s) in a block at byte 19200" in err
    assert "up to 1e+30" in err and "set source.format to s16le or s32le" in err


def test_stdin_s16_read_as_f32le_is_clipped_not_fatal(capsys, warnings_on_stderr):
    raw = (tone(48000, 0.5, 300.0) * 32767).astype("<i2").tobytes()
    src = StdinSource("f32le", stream=io.BytesIO(raw))
    out = collect(src)
    assert np.max(np.abs(out)) <= 1.0 and src.clipped_samples > 0
    assert "source.format to s16le" in capsys.readouterr().err


def test_stdin_over_a_pipe_with_a_quiet_writer_yields_empty_blocks_and_closes():
    """A real pipe whose writer stops writing but stays open: a not-live stdin source
    yields an empty block now and then (the batch loop looks at its stop event then);
    close() ends either kind within one poll."""
    import os

    for realtime in (False, True):
        r, w = os.pipe()
        try:
            os.write(w, np.zeros(4800, "<i2").tobytes())
            with os.fdopen(r, "rb", buffering=0) as stream:
                src = StdinSource("s16le", stream=stream, realtime=realtime)
                src.open()
                it = src.blocks()
                assert next(it).size == 4800
                if not realtime:
                    assert next(it).size == 0  # nothing written for POLL_SECONDS
                rest: list[np.ndarray] = []
                reader = threading.Thread(target=lambda: rest.extend(it))  # noqa: B023
                reader.start()
                src.close()  # from another thread, the writer still open and quiet
                reader.join(timeout=5)
                assert not reader.is_alive()
                assert all(b.size == 0 for b in rest)
        finally:
            os.close(w)


def test_stdin_nan_counted():
    x = tone(48000, 0.5, 300.0)
    x[10:20] = np.nan
    src = StdinSource("f32le", stream=io.BytesIO(x.astype("<f4").tobytes()))
    out = collect(src)
    assert src.bad_samples == 10 and np.all(np.isfinite(out))


def test_mic_callback_contract():
    """PortAudio calls ``callback`` with native blocks and a status; it only copies + counts."""
    mic = MicSource(block_seconds=0.1, queue_seconds=2.0)
    mic.configure(44100, 2)
    x = tone(44100, 1.0, 1000.0, channels=2)
    ok = SimpleNamespace(input_overflow=False)
    over = SimpleNamespace(input_overflow=True)
    block = 4410
    for i in range(0, len(x), block):
        buf = x[i : i + block].copy()
        mic.callback(buf, len(buf), None, over if i == 0 else ok)
        buf[:] = 0  # PortAudio reuses its buffer: the callback must have copied
    nan_block = np.full((block, 2), np.nan, np.float32)
    mic.callback(nan_block, block, None, ok)
    assert mic.overflows == 1
    mic.close()  # blocks() drains the queue, then ends
    out = np.concatenate(list(mic.blocks()))
    assert mic.bad_samples == block * 2
    assert np.all(np.isfinite(out))
    assert abs(peak_hz(out[SR // 4 : SR - SR // 4]) - 1000.0) < 3.0
    assert abs(out.size - int(1.1 * SR)) < 2000  # soxr holds back a few ms until the end


def test_mic_full_queue_counts_overflow_not_blocks():
    mic = MicSource(block_seconds=0.1, queue_seconds=0.2)  # room for 2 blocks
    mic.configure(48000, 1)
    blk = np.zeros((4800, 1), np.float32)
    for _ in range(5):
        mic.callback(blk, 4800, None, None)
    assert mic.overflows == 3


class FakeSd:
    """sounddevice's query API as seen on a machine with two inputs and one output."""

    def __init__(self, devices):
        self.devices = devices

    def query_devices(self, kind=None):
        if kind == "input":
            return self.devices[0]
        return self.devices


def dev(name, inputs):
    return {"name": name, "max_input_channels": inputs, "default_samplerate": 44100.0,
            "hostapi": 0}


def test_device_by_index_name_and_substring():
    sd = FakeSd([dev("USB Mic", 1), dev("HDMI out", 0), dev("ReSpeaker 4 Mic Array", 4)])
    assert resolve_device(sd, 2)[0] == 2
    assert resolve_device(sd, "2")[0] == 2
    assert resolve_device(sd, "USB Mic")[0] == 0
    assert resolve_device(sd, "respeaker")[0] == 2
    with pytest.raises(AudioError, match="not an input device"):
        resolve_device(sd, 1)
    with pytest.raises(AudioError, match=r"no input device matches.*inputs are: 0: USB Mic"):
        resolve_device(sd, "webcam")
    with pytest.raises(AudioError, match="several inputs"):
        resolve_device(sd, "mic")
    with pytest.raises(AudioError, match="no input device"):
        resolve_device(FakeSd([dev("HDMI out", 0)]), None)


def test_make_source():
    assert isinstance(make_source(SourceConfig(type="mic")), MicSource)
    s = make_source(SourceConfig(type="stdin", format="s32le", sample_rate=16000, channels=2))
    assert isinstance(s, StdinSource) and (s.fmt, s.rate, s.channels) == ("s32le", 16000, 2)
    assert not s.realtime  # stdin is scored window by window unless it says it is live
    assert make_source(SourceConfig(type="stdin", realtime=True)).realtime
    f = make_source(SourceConfig(type="file", path="x.wav", realtime=True), realtime=False)
    assert isinstance(f, FileSource) and not f.realtime


class FakeSdFull(FakeSd):
    default = SimpleNamespace(device=(2, 1))

    def query_hostapis(self):
        return [{"name": "ALSA"}]


def test_devices_command_lists_inputs_or_says_none(monkeypatch, capsys):
    import argparse

    import listener.audio.mic
    from listener.cli import devices

    sd = FakeSdFull([dev("USB Mic", 1), dev("HDMI out", 0), dev("ReSpeaker", 4)])
    monkeypatch.setattr(listener.audio.mic, "import_sounddevice", lambda: sd)
    assert devices.run(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "USB Mic (ALSA)" in out and "ReSpeaker" in out and "HDMI" not in out
    sd.devices = [dev("HDMI out", 0)]
    assert devices.run(argparse.Namespace()) == 1
    assert "PortAudio finds no input device" in capsys.readouterr().err
