"""The log-mel front end (listener.model.logmel, melbank, streaming_logmel) against
transformers' ClapFeatureExtractor (the reference) and itself.


The reference is run with the same config dict, on inputs of at most n_samples (where it
is deterministic) or on the newest n_samples of a longer clip (our documented behaviour;
the reference would random-crop). Streaming must equal a full recompute.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from listener.errors import ModelError
from listener.model.logmel import LogMel
from listener.model.melbank import hann_window, mel_filter_bank
from listener.model.streaming_logmel import StreamingLogMel

TOL_DB = 1e-3  # parity with ClapFeatureExtractor
STREAM_TOL_DB = 1e-4  # the sliding path equals a full recompute

# laion/clap-htsat-unfused preprocessor_config.json as published (models/ keeps it)
UNFUSED = json.loads((Path(__file__).resolve().parent.parent / "models" / "clap-htsat-unfused.json")
                     .read_text())["preprocessor_config"]
SR = 48_000
N = 480_000


def config(**overrides: object) -> dict:
    return {**UNFUSED, **overrides}


def reference(cfg: dict, audio: np.ndarray) -> np.ndarray:
    from transformers import ClapFeatureExtractor

    kwargs = {
        k: v for k, v in cfg.items() if k not in ("feature_extractor_type", "processor_class")
    }
    fe = ClapFeatureExtractor(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fe(audio, sampling_rate=cfg["sampling_rate"], return_tensors="np")
    return np.asarray(out["input_features"][0])


def assert_close(ours: np.ndarray, ref: np.ndarray, tol: float = TOL_DB) -> None:
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape
    diff = float(np.max(np.abs(ours.astype(np.float64) - ref)))
    assert diff <= tol, f"max |dB difference| {diff} > {tol}"


def signal(name: str, n: int = N, sr: int = SR) -> np.ndarray:
    t = np.arange(n) / sr
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if name == "noise":
        x = 0.3 * rng.standard_normal(n)
    elif name == "chirp":  # 100 Hz -> 20 kHz over 10 s: exercises every mel band
        x = 0.9 * np.sin(2 * np.pi * (100 * t + (20_000 - 100) / 20 * t**2))
    elif name == "silence":
        x = np.zeros(n)
    elif name == "dc":
        x = np.full(n, 0.5)
    elif name == "square":  # full scale
        x = np.sign(np.sin(2 * np.pi * 441.3 * t))
        x[x == 0] = 1.0
    elif name == "mix":  # tone + noise, for the padding tests
        x = 0.5 * np.sin(2 * np.pi * 997 * t) + 0.05 * rng.standard_normal(n)
    else:
        raise AssertionError(name)
    return x.astype(np.float32)


# --- precomputed pieces and geometry ---------------------------------------------------


@pytest.mark.parametrize(
    "cfg",
    [
        dict(n_freqs=513, n_mels=64, fmin=50, fmax=14000, sample_rate=48000),
        dict(n_freqs=257, n_mels=40, fmin=20, fmax=8000, sample_rate=16000),
        dict(n_freqs=513, n_mels=96, fmin=0, fmax=24000, sample_rate=48000),
    ],
)
@pytest.mark.parametrize("slaney", [True, False])
def test_filter_bank_equals_transformers(cfg: dict, slaney: bool) -> None:
    from transformers.audio_utils import mel_filter_bank as ref_bank

    scale = "slaney" if slaney else "htk"
    ref = ref_bank(
        num_frequency_bins=cfg["n_freqs"],
        num_mel_filters=cfg["n_mels"],
        min_frequency=cfg["fmin"],
        max_frequency=cfg["fmax"],
        sampling_rate=cfg["sample_rate"],
        norm="slaney" if slaney else None,
        mel_scale=scale,
    )
    ours = mel_filter_bank(slaney=slaney, **cfg)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


def test_window_equals_transformers() -> None:
    from transformers.audio_utils import window_function

    np.testing.assert_array_equal(hann_window(1024), window_function(1024, "hann"))


def test_frame_geometry_of_default_config() -> None:
    lm = LogMel.from_config(UNFUSED)
    # 480000 samples + 512 reflect padding each side, frames of 1024 every 480:
    # 1 + (481024 - 1024) // 480 = 1 + 1000 = 1001
    assert (lm.n_samples, lm.n_frames, lm.n_mels, lm.hop_length) == (480000, 1001, 64, 480)
    # frame i covers [i*480 - 512, i*480 + 512): frames 0, 1 and 999, 1000 touch the padding
    assert (lm.interior_lo, lm.interior_hi) == (2, 999)
    assert lm(np.zeros(N, np.float32)).shape == (1, 1001, 64)


# --- parity with ClapFeatureExtractor ----------------------------------------------------


@pytest.mark.parametrize("truncation", ["rand_trunc", "fusion"])
@pytest.mark.parametrize("name", ["noise", "chirp", "silence", "dc", "square"])
def test_ten_second_signals_match_reference(truncation: str, name: str) -> None:
    cfg = config(truncation=truncation)
    x = signal(name)
    ours = LogMel.from_config(cfg)(x)
    ref = reference(cfg, x)
    assert ours.shape == ((4 if truncation == "fusion" else 1), 1001, 64)
    assert_close(ours, ref)
    if truncation == "fusion":  # four identical views for a clip of at most 10 s
        assert all(np.array_equal(ours[0], ours[c]) for c in range(1, 4))


@pytest.mark.parametrize("truncation", ["rand_trunc", "fusion"])
@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
@pytest.mark.parametrize("seconds", [0.5, 3.7, 10.0])
def test_short_clips_padded_like_reference(truncation: str, padding: str, seconds: float) -> None:
    cfg = config(truncation=truncation, padding=padding)
    x = signal("mix", round(seconds * SR))
    lm = LogMel.from_config(cfg)
    prepared = lm.prepare(x)
    assert prepared.shape == (N,)
    n = x.shape[0]
    if padding == "pad":
        assert np.array_equal(prepared[:n], x) and not prepared[n:].any()
    elif padding == "repeatpad":  # floor(N/n) whole copies, then zeros
        reps = N // n
        assert np.array_equal(prepared[: reps * n], np.tile(x, reps))
        assert not prepared[reps * n :].any()
    else:  # repeat: copies until full, the last one cut
        assert np.array_equal(prepared, np.tile(x, N // n + 1)[:N])
    assert_close(lm(x), reference(cfg, x))


@pytest.mark.parametrize("truncation", ["rand_trunc", "fusion"])
def test_longer_clip_uses_newest_window(truncation: str) -> None:
    cfg = config(truncation=truncation)
    x = signal("chirp", int(13.3 * SR))
    lm = LogMel.from_config(cfg)
    ours = lm(x)
    np.testing.assert_array_equal(lm.prepare(x), x[-N:])
    np.testing.assert_array_equal(ours, lm(x[-N:]))  # deterministic: no random crop
    assert_close(ours, reference(cfg, x[-N:]))


def test_float64_and_int_input_match_reference() -> None:
    x = signal("noise").astype(np.float64)
    assert_close(LogMel.from_config(UNFUSED)(x), reference(UNFUSED, x))
    pcm = (signal("mix", 3 * SR) * 20000).astype(np.int16)
    assert_close(LogMel.from_config(UNFUSED)(pcm), reference(UNFUSED, pcm.astype(np.float64)))


NON_DEFAULT = [
    config(feature_size=96, frequency_min=0, frequency_max=20000),
    config(
        sampling_rate=16000,
        fft_window_size=512,
        n_fft=512,
        nb_frequency_bins=257,
        hop_length=160,
        max_length_s=4,
        nb_max_samples=64000,
        feature_size=40,
        frequency_min=20,
        frequency_max=8000,
        padding="pad",
        truncation="fusion",
    ),
]


@pytest.mark.parametrize("cfg", NON_DEFAULT, ids=["96mels-20k", "16k-hop160-fusion"])
def test_non_default_config_read_from_config(cfg: dict) -> None:
    lm = LogMel.from_config(cfg)
    sr, n = cfg["sampling_rate"], cfg["max_length_s"] * cfg["sampling_rate"]
    assert lm.n_samples == n and lm.n_mels == cfg["feature_size"]
    assert lm.n_frames == 1 + n // cfg["hop_length"]
    for x in (signal("chirp", n, sr), signal("mix", int(1.3 * sr), sr)):
        ours = lm(x)
        assert ours.shape == (lm.n_channels, lm.n_frames, cfg["feature_size"])
        assert_close(ours, reference(cfg, x))


def test_missing_keys_take_reference_defaults() -> None:
    cfg = {"frequency_min": 50, "truncation": "rand_trunc"}
    x = signal("noise")
    assert_close(LogMel.from_config(cfg)(x), reference(cfg | {"sampling_rate": SR}, x))
    assert LogMel.from_config({}).truncation == "fusion"  # the reference's default


# --- config and input errors ----------------------------------------------------------


def test_from_file_reads_file_or_directory(tmp_path) -> None:
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps(config(feature_size=48)))
    assert LogMel.from_file(path).n_mels == 48
    assert LogMel.from_file(tmp_path).n_mels == 48


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"truncation": "random"}, ["truncation", "rand_trunc"]),
        ({"padding": "wrap"}, ["padding", "repeatpad"]),
        ({"nb_frequency_bins": 512}, ["nb_frequency_bins", "513"]),
        ({"hop_length": 0}, ["hop_length", "positive"]),
        ({"frequency_max": 30000}, ["frequency_max"]),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, overrides: dict, words: list[str]) -> None:
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps(config(**overrides)))
    with pytest.raises(ModelError) as err:
        LogMel.from_file(path)
    for word in [str(path), *words]:
        assert word in str(err.value)


def test_unreadable_config_is_a_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        LogMel.from_file(tmp_path / "nope.json")
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ModelError, match="JSON"):
        LogMel.from_file(tmp_path)


def test_bad_audio_is_rejected() -> None:
    lm = LogMel.from_config(UNFUSED)
    with pytest.raises(ValueError, match="empty"):
        lm(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="mono"):
        lm(np.zeros((2, 100), np.float32))


def test_module_does_not_import_torch_or_transformers() -> None:
    code = (
        "import sys, listener.model.logmel, listener.model.melbank, "
        "listener.model.streaming_logmel; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- streaming ------------------------------------------------------------------------


def check_stream(lm: LogMel, stream: np.ndarray, ends: list[int]) -> StreamingLogMel:
    st = StreamingLogMel(lm)
    for end in ends:
        window = stream[max(0, end - lm.n_samples) : end]
        got = st.features(window, end)
        want = lm(window)
        assert got.shape == want.shape
        diff = float(np.max(np.abs(got - want)))
        assert diff <= STREAM_TOL_DB, f"end={end}: streaming differs by {diff} dB"
    return st


def test_streaming_one_second_hops_compute_only_new_and_edge_frames() -> None:
    lm = LogMel.from_config(UNFUSED)
    stream = signal("chirp", 16 * SR)
    st = StreamingLogMel(lm)
    counts = []
    for i, end in enumerate(range(N, 16 * SR + 1, SR)):
        window = stream[end - N : end]
        got = st.features(window, end)
        diff = float(np.max(np.abs(got - lm(window))))
        assert diff <= STREAM_TOL_DB, f"hop {i}: {diff} dB"
        counts.append(st.last_frames_computed)
    # first call: all 1001; then per hop 104 = frames 0, 1 (left reflect padding changed),
    # 899, 900 (were the padded 999, 1000, now interior) and 901..1000 (new)
    assert counts == [1001] + [104] * (len(counts) - 1)
    assert st.full_computes == 1 and st.incremental_computes == len(counts) - 1
    assert st.frames_computed == sum(counts)


def test_streaming_random_shifts_resets_and_gaps() -> None:
    lm = LogMel.from_config(UNFUSED)
    stream = signal("noise", 60 * SR) + signal("chirp", 60 * SR)
    rng = np.random.default_rng(7)
    hop = lm.hop_length
    ends = [N]
    for _ in range(14):
        kind = rng.integers(4)
        if kind == 0:  # hop-aligned small shift
            shift = int(rng.integers(0, 40)) * hop
        elif kind == 1:  # hop-aligned large shift (most frames new)
            shift = int(rng.integers(900, 1000)) * hop
        elif kind == 2:  # not a multiple of hop -> full compute
            shift = int(rng.integers(1, 20 * hop))
            shift += 1 if shift % hop == 0 else 0
        else:  # a gap longer than the window -> full compute
            shift = N + int(rng.integers(1, 5)) * hop
        ends.append(min(ends[-1] + shift, stream.shape[0]))
    st = check_stream(lm, stream, ends)
    assert st.incremental_computes >= 3 and st.full_computes >= 3


def test_streaming_counts_per_case_and_reset() -> None:
    lm = LogMel.from_config(UNFUSED)
    stream = signal("mix", 30 * SR)
    st = StreamingLogMel(lm)

    def run(end: int) -> int:
        got = st.features(stream[end - N : end], end)
        assert float(np.max(np.abs(got - lm(stream[end - N : end])))) <= STREAM_TOL_DB
        return st.last_frames_computed

    assert run(N) == 1001
    assert run(N) == 4  # same window: only the four padded edge frames
    assert run(N + 480) == 5  # one new frame + 2 left + 2 right
    e0 = N + 480 + 7
    assert run(e0) == 1001  # not a multiple of the hop
    assert run(e0 + 996 * 480) == 2 + 1001 - 3  # reuses the 1 interior frame left over
    assert run(e0 + 996 * 480 + 997 * 480) == 1001  # too far: nothing interior to reuse
    e1 = e0 + 996 * 480 + 997 * 480
    assert run(e1 - 480) == 1001  # backwards
    assert run(e1) == 5
    st.reset()  # e.g. a new source: never reuse
    assert run(e1 + 480) == 1001


def test_streaming_output_is_not_the_cache_and_short_windows_work() -> None:
    lm = LogMel.from_config(config(truncation="fusion"))
    stream = signal("chirp", 12 * SR)
    st = StreamingLogMel(lm)
    first = st.features(stream[: 2 * SR], 2 * SR)  # start-up: 2 s, padded like lm()
    np.testing.assert_array_equal(first, lm(stream[: 2 * SR]))
    a = st.features(stream[:N], N)
    a[:] = 0.0  # a caller scribbling on its result must not corrupt the next one
    b = st.features(stream[SR : N + SR], N + SR)
    assert b.shape == (4, 1001, 64)
    assert float(np.max(np.abs(b - lm(stream[SR : N + SR])))) <= STREAM_TOL_DB
    assert st.last_frames_computed == 104
    # a longer buffer is cut to its newest n_samples
    c = st.features(stream[: N + 2 * SR], N + 2 * SR)
    assert float(np.max(np.abs(c - lm(stream[2 * SR : N + 2 * SR])))) <= STREAM_TOL_DB
    assert st.last_frames_computed == 104


def test_streaming_non_default_hop() -> None:
    lm = LogMel.from_config(NON_DEFAULT[1])  # 16 kHz, hop 160, n_fft 512, fusion
    sr, n = 16000, lm.n_samples
    stream = signal("mix", 11 * sr)
    ends = [n, n + 160, n + sr, n + sr + 37, n + 2 * sr, n + 2 * sr + 160 * 390]
    st = check_stream(lm, stream, ends)
    assert (st.incremental_computes, st.full_computes) == (3, 3)
