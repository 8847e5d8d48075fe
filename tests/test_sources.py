"""Sources: file resampling (16 kHz mono, 44.1 kHz stereo), stdin PCM formats, the mic
callback contract (the hardware edge), NaN/inf sanitising, device selection."""

from __future__ import annotations

import io
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
    # s16 data read as f32: values far outside [-1, 1]
    raw = (tone(48000, 0.5, 300.0) * 32767).astype("<i2").tobytes()
    with pytest.raises(AudioError, match=r"does not look like f32le.*source.format"):
        collect(StdinSource("f32le", stream=io.BytesIO(raw)))
    # stereo s16 with an odd byte count: not whole frames
    with pytest.raises(AudioError, match="not a whole frame of s16le x 2"):
        collect(StdinSource("s16le", channels=2, stream=io.BytesIO(b"\x00" * 4001)))


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
