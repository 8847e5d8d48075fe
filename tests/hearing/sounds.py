"""Seeded generators of the sound classes the hearing test model knows, plus background noise.

Why: detection tests need audio whose content is known. Every function here is a pure
function of its seed, so the training script (build_model.py) and the tests that build
fresh streams draw from the same distribution with disjoint seeds. Training uses seeds
below ``TRAIN_SEED_LIMIT``; tests should use seeds >= ``FRESH_SEED_BASE``.

All audio is float32 mono at 48 kHz.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy.fft import next_fast_len

SR = 48000
TRAIN_SEED_LIMIT = 1_000_000
FRESH_SEED_BASE = 5_000_000

CLASSES: list[str] = [
    "alarm",
    "siren",
    "ticking",
    "knocking",
    "chirps",
    "hum",
    "hiss",
    "rumble",
    "babble",
    "quiet",
]

# Event classes (everything except the background class).
EVENT_CLASSES: list[str] = [c for c in CLASSES if c != "quiet"]

TRAIN_CAPTIONS: dict[str, list[str]] = {
    "alarm": [
        "an alarm beeping",
        "a smoke alarm beeps",
        "beeping of an alarm",
        "a fire alarm going off",
        "repeated electronic beeps",
        "a loud beeping alarm",
        "an alarm clock beeping",
        "short high beeps from a smoke detector",
        "a beeping sound",
        "electronic alarm beeps",
    ],
    "siren": [
        "a siren wailing",
        "an ambulance siren",
        "a police siren",
        "a rising and falling siren",
        "a sweeping tone going up and down",
        "a wailing siren",
        "an emergency vehicle siren",
        "a tone sweeping up and down",
        "a siren howling",
        "a warning siren",
    ],
    "ticking": [
        "a clock ticking",
        "the ticking of a clock",
        "a ticking clock",
        "tick tock of a clock",
        "a clock ticks steadily",
        "regular clicks of a clock",
        "a wall clock ticking",
        "clicking of a clock",
        "a metronome ticking",
        "steady ticking",
    ],
    "knocking": [
        "knocking on a door",
        "someone knocks on the door",
        "a knock at the door",
        "knocks on wood",
        "a person knocking",
        "loud knocking",
        "knocking on a wooden door",
        "door knocks",
        "someone is knocking",
        "thuds of knocking",
    ],
    "chirps": [
        "birds chirping",
        "a bird chirps",
        "bird song",
        "a bird singing",
        "chirping birds",
        "tweeting of birds",
        "a small bird tweeting",
        "birds singing outside",
        "bird calls",
        "high chirps of a bird",
    ],
    "hum": [
        "an electrical hum",
        "mains hum",
        "a transformer humming",
        "a low electric hum",
        "humming of electricity",
        "a buzzing hum from a power line",
        "electrical buzzing",
        "a fridge humming",
        "a steady hum",
        "a humming appliance",
    ],
    "hiss": [
        "a hissing sound",
        "steam hissing",
        "a hiss of air",
        "gas hissing",
        "air escaping with a hiss",
        "a loud hiss",
        "hissing steam from a pipe",
        "white noise hiss",
        "a hissing leak",
        "a kettle hissing",
    ],
    "rumble": [
        "a low rumble",
        "thunder rumbling",
        "rumbling of thunder",
        "a deep rumble",
        "a truck rumbling by",
        "low rumbling noise",
        "a distant rumble",
        "an engine rumbling",
        "rumbling thunder in the distance",
        "a heavy rumble",
    ],
    "babble": [
        "people talking",
        "a person speaking",
        "voices talking",
        "speech babble",
        "a man talking",
        "a woman speaking",
        "people chatting",
        "a conversation",
        "someone talking",
        "human voices",
    ],
    "quiet": [
        "silence",
        "a quiet room",
        "background noise",
        "quiet background",
        "nothing happening",
        "ambient room noise",
        "faint background noise",
        "a silent room",
        "quiet ambience",
        "soft noise of an empty room",
    ],
}

# Wordings never used verbatim in training; they share content words with training captions.
TEST_CAPTIONS: dict[str, list[str]] = {
    "alarm": ["smoke alarm beeping", "a smoke detector beeping", "the beeping of a fire alarm"],
    "siren": ["siren", "an ambulance siren wailing", "a police car siren"],
    "ticking": ["ticking clock", "a clock is ticking", "the tick tock of a wall clock"],
    "knocking": ["someone knocking on the door", "knock knock", "a loud knock on a door"],
    "chirps": ["a bird chirping", "birds tweeting", "chirping of a small bird"],
    "hum": ["electric hum", "the hum of a transformer", "a humming fridge"],
    "hiss": ["hissing", "a hiss of steam", "hissing gas leak"],
    "rumble": ["rumble of thunder", "a distant thunder rumbling", "a low deep rumble"],
    "babble": ["people speaking", "a man and a woman talking", "someone is speaking"],
    "quiet": ["quiet room", "background room noise", "silence in a quiet room"],
}


# --------------------------------------------------------------------------- helpers


def _rng(seed: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(salt)])


def _colored_noise(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    m = next_fast_len(n, real=True)
    spec = sfft.rfft(rng.standard_normal(m).astype(np.float32))
    f = sfft.rfftfreq(m, 1.0 / SR).astype(np.float32)
    f[0] = f[1]
    spec *= np.exp(np.log(f) * (-exponent / 2.0))
    x = sfft.irfft(spec, m)[:n]
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _bandpass_noise(n: int, rng: np.random.Generator, lo: float, hi: float) -> np.ndarray:
    spec = sfft.rfft(rng.standard_normal(n))
    f = sfft.rfftfreq(n, 1.0 / SR)
    # soft band edges
    gain = 1.0 / (1.0 + (lo / np.maximum(f, 1.0)) ** 4) / (1.0 + (f / hi) ** 4)
    x = sfft.irfft(spec * gain, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _fade(x: np.ndarray, seconds: float = 0.01) -> np.ndarray:
    k = min(len(x) // 2, int(seconds * SR))
    if k > 0:
        ramp = np.linspace(0.0, 1.0, k)
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def level(x: np.ndarray) -> float:
    """RMS level in dBFS (-200 for digital silence)."""
    rms = float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))
    return 20.0 * np.log10(rms) if rms > 0 else -200.0


def _set_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(x**2)) + 1e-12
    return x * (10 ** (dbfs / 20.0) / rms)


def _resonator(n: int, f0: float, decay: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    return np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi)) * np.exp(-t / decay)


# --------------------------------------------------------------------------- classes


def _alarm(n: int, rng: np.random.Generator) -> np.ndarray:
    f0 = rng.uniform(1800, 4200)
    on = rng.uniform(0.06, 0.3)
    off = rng.uniform(0.05, 0.35)
    group = int(rng.integers(1, 4))  # beeps per group
    group_gap = rng.uniform(0.0, 0.6) if group > 1 else 0.0
    t = np.arange(n) / SR
    tone = np.sin(2 * np.pi * f0 * t)
    if rng.random() < 0.5:  # square-ish piezo
        tone = np.tanh(3.0 * tone) + 0.3 * np.sin(2 * np.pi * 3 * f0 * t)
    env = np.zeros(n)
    pos = rng.uniform(0, 0.05)
    k = 0
    while pos < n / SR:
        a, b = int(pos * SR), int(min(n, (pos + on) * SR))
        env[a:b] = 1.0
        k += 1
        pos += on + off + (group_gap if k % group == 0 else 0.0)
    ramp = int(0.004 * SR)
    env = np.convolve(env, np.ones(ramp) / ramp, mode="same")
    return tone * env


def _siren(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    lo = rng.uniform(450, 900)
    hi = lo * rng.uniform(1.5, 2.4)
    rate = rng.uniform(0.3, 4.0)  # sweeps per second: wail (slow) .. yelp (fast)
    phase = rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.5:
        mod = 0.5 - 0.5 * np.cos(2 * np.pi * rate * t + phase)
    else:  # saw-like rise
        mod = ((rate * t + phase / (2 * np.pi)) % 1.0) ** 0.7
    f = lo + (hi - lo) * mod
    ph = 2 * np.pi * np.cumsum(f) / SR
    x = np.sin(ph) + rng.uniform(0.0, 0.5) * np.sin(2 * ph) + rng.uniform(0, 0.3) * np.sin(3 * ph)
    return x


def _ticking(n: int, rng: np.random.Generator) -> np.ndarray:
    rate = rng.uniform(1.0, 4.0)
    f_res = rng.uniform(2500, 7000)
    f_res2 = f_res * rng.uniform(0.6, 0.9)
    out = np.zeros(n)
    click_n = int(0.02 * SR)
    pos = rng.uniform(0, 1.0 / rate)
    k = 0
    while pos < n / SR:
        a = int(pos * SR)
        m = min(click_n, n - a)
        fr = f_res if k % 2 == 0 else f_res2
        click = _resonator(m, fr, rng.uniform(0.001, 0.003), rng)
        click += 0.5 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.0008 * SR))
        out[a : a + m] += click * rng.uniform(0.8, 1.0)
        k += 1
        pos += 1.0 / rate * rng.uniform(0.98, 1.02)
    return out


def _knocking(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    f_res = rng.uniform(90, 350)
    knock_n = int(0.12 * SR)
    pos = rng.uniform(0, 0.2)
    while pos < n / SR:
        count = int(rng.integers(2, 6))
        spacing = rng.uniform(0.1, 0.28)
        for _ in range(count):
            a = int(pos * SR)
            if a >= n:
                break
            m = min(knock_n, n - a)
            body = _resonator(m, f_res * rng.uniform(0.95, 1.05), rng.uniform(0.012, 0.03), rng)
            body += 0.6 * _resonator(m, f_res * rng.uniform(2.2, 3.1), 0.008, rng)
            tt = np.arange(m)
            noise = rng.standard_normal(m) * np.exp(-tt / (0.003 * SR))
            noise = np.convolve(noise, np.ones(6) / 6, mode="same")  # dull the attack
            out[a : a + m] += (body + 0.8 * noise) * rng.uniform(0.7, 1.0)
            pos += spacing * rng.uniform(0.9, 1.1)
        pos += rng.uniform(0.5, 1.5)
    return out


def _chirps(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    base = rng.uniform(2500, 5500)
    pos = rng.uniform(0, 0.1)
    while pos < n / SR:
        trill = int(rng.integers(1, 7))
        for _ in range(trill):
            d = rng.uniform(0.03, 0.15)
            m = int(d * SR)
            a = int(pos * SR)
            if a + m >= n:
                break
            tt = np.arange(m) / SR
            f_start = base * rng.uniform(0.7, 1.3)
            f_end = f_start * rng.uniform(0.5, 1.8)
            f = f_start + (f_end - f_start) * (tt / d) ** rng.uniform(0.5, 2.0)
            f = f + rng.uniform(0, 300) * np.sin(2 * np.pi * rng.uniform(30, 80) * tt)
            ph = 2 * np.pi * np.cumsum(f) / SR
            env = np.sin(np.pi * tt / d) ** 2
            out[a : a + m] += np.sin(ph) * env * rng.uniform(0.5, 1.0)
            pos += d + rng.uniform(0.01, 0.06)
        pos += rng.uniform(0.1, 0.8)
    return out


def _hum(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / SR
    mains = 50.0 if rng.random() < 0.5 else 60.0
    mains *= rng.uniform(0.995, 1.005)
    x = np.zeros(n)
    tilt = rng.uniform(0.6, 1.0)
    for h in range(1, 17):
        amp = tilt ** (h - 1) * rng.uniform(0.3, 1.0)
        if h in (2, 3, 4):
            amp *= rng.uniform(1.0, 2.0)
        x += amp * np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.7:  # buzzy
        x = np.tanh(rng.uniform(1.0, 3.0) * x / (np.abs(x).max() + 1e-9))
    return x


def _hiss(n: int, rng: np.random.Generator) -> np.ndarray:
    lo = rng.uniform(1500, 4000)
    hi = rng.uniform(9000, 16000)
    x = _bandpass_noise(n, rng, lo, hi)
    t = np.arange(n) / SR
    x *= 1.0 + rng.uniform(0, 0.2) * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t)
    return x


def _rumble(n: int, rng: np.random.Generator) -> np.ndarray:
    hi = rng.uniform(70, 180)
    x = _bandpass_noise(n, rng, 20.0, hi)
    # slow amplitude fluctuation (rolling thunder / engine)
    k = max(2, int(n / SR * rng.uniform(2, 6)))
    ctrl = rng.uniform(0.3, 1.0, k)
    env = np.interp(np.arange(n), np.linspace(0, n - 1, k), ctrl)
    if rng.random() < 0.4:  # engine: low noise pulsed at the firing rate (no steady tone)
        t = np.arange(n) / SR
        fire = rng.uniform(8.0, 25.0)
        x *= 1.0 + rng.uniform(0.5, 0.9) * np.sin(2 * np.pi * fire * t)
    return x * env


_VOWELS = [  # (F1, F2, F3) Hz
    (730, 1090, 2440),
    (270, 2290, 3010),
    (530, 1840, 2480),
    (570, 840, 2410),
    (300, 870, 2240),
    (660, 1720, 2410),
    (490, 1350, 1690),
]


def _formant_filter(x: np.ndarray, freqs: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    from scipy.signal import lfilter

    y = np.zeros_like(x)
    for i, f in enumerate(freqs):
        f = f * rng.uniform(0.9, 1.15)
        bw = 80 + 40 * i
        r = np.exp(-np.pi * bw / SR)
        th = 2 * np.pi * f / SR
        a = [1.0, -2 * r * np.cos(th), r * r]
        y += lfilter([1.0 - r], a, x) / (1.0 + i)
    return y


def _babble(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n)
    voices = int(rng.integers(1, 3))
    for _ in range(voices):
        f0 = rng.uniform(95, 240)
        pos = 0
        while pos < n:
            syl = int(rng.uniform(0.12, 0.3) * SR)
            m = min(syl, n - pos)
            tt = np.arange(m) / SR
            f = f0 * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 4) * tt + rng.uniform(0, 6)))
            f *= 1 + 0.01 * rng.standard_normal(m).cumsum() / np.sqrt(max(m, 1)) * 0.5
            ph = np.cumsum(f) / SR
            pulses = np.diff(np.floor(ph), prepend=np.floor(ph[0])).astype(float)
            src = pulses + 0.02 * rng.standard_normal(m)
            v = _formant_filter(src, _VOWELS[int(rng.integers(len(_VOWELS)))], rng)
            env = np.sin(np.pi * np.arange(m) / m) ** 1.5
            out[pos : pos + m] += v * env * rng.uniform(0.4, 1.0)
            pos += m + int(rng.uniform(0.0, 0.12) * SR)
            if rng.random() < 0.08:
                pos += int(rng.uniform(0.1, 0.4) * SR)  # pause
    return out


_GENERATORS = {
    "alarm": _alarm,
    "siren": _siren,
    "ticking": _ticking,
    "knocking": _knocking,
    "chirps": _chirps,
    "hum": _hum,
    "hiss": _hiss,
    "rumble": _rumble,
    "babble": _babble,
}


# --------------------------------------------------------------------------- public API


def render(
    cls: str, seed: int, duration: float | None = None, level_dbfs: float | None = None
) -> np.ndarray:
    """One clean rendition of class ``cls`` (no background), float32 at 48 kHz.

    ``duration`` defaults to a seeded 1-4 s; ``level_dbfs`` (RMS) to a seeded -30..-12.
    ``quiet`` renders silence (zeros) of that length.
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown sound class {cls!r}; known: {', '.join(CLASSES)}")
    rng = _rng(seed, CLASSES.index(cls) + 1)
    if duration is None:
        duration = float(rng.uniform(1.0, 4.0))
    if level_dbfs is None:
        level_dbfs = float(rng.uniform(-30.0, -12.0))
    n = max(1, round(duration * SR))
    if cls == "quiet":
        return np.zeros(n, np.float32)
    x = _GENERATORS[cls](n, rng)
    x = _fade(x.astype(np.float64), 0.01)
    return _set_level(x, level_dbfs).astype(np.float32)


def background(seconds: float, seed: int, level_dbfs: float | None = None) -> np.ndarray:
    """Room-like background: pink/brownish noise with a little low room tone, seeded.

    ``level_dbfs`` (RMS) defaults to a seeded -62..-42 dBFS.
    """
    rng = _rng(seed, 101)
    if level_dbfs is None:
        level_dbfs = float(rng.uniform(-62.0, -42.0))
    n = max(1, round(seconds * SR))
    x = _colored_noise(n, rng, rng.uniform(0.8, 1.6))
    if rng.random() < 0.3:
        x += 0.3 * _colored_noise(n, rng, 0.0)  # a bit of white (mic self-noise)
    return _set_level(x, level_dbfs).astype(np.float32)


def window(
    cls: str,
    seed: int,
    seconds: float = 10.0,
    event_seconds: float | None = None,
    snr_db: float | None = None,
    position: float | None = None,
) -> tuple[np.ndarray, tuple[float, float]]:
    """A detection window: background of ``seconds`` with one event of ``cls`` inside.

    The event (1-4 s by default) starts at ``position`` seconds (seeded random when None,
    fully inside); its RMS is ``snr_db`` (seeded 6..30 dB) above the background RMS.
    Returns (audio, (start_s, end_s)); for ``quiet`` the span is empty (0, 0).
    """
    rng = _rng(seed, 202)
    bg_level = float(rng.uniform(-62.0, -42.0))
    out = background(seconds, seed, bg_level).astype(np.float64)
    if cls == "quiet":
        return out.astype(np.float32), (0.0, 0.0)
    if event_seconds is None:
        event_seconds = float(rng.uniform(1.0, 4.0))
    if snr_db is None:
        snr_db = float(rng.uniform(6.0, 30.0))
    level = min(-6.0, bg_level + snr_db)
    ev = render(cls, seed, event_seconds, level)
    if position is None:
        position = float(rng.uniform(0.0, max(0.0, seconds - event_seconds)))
    a = round(position * SR)
    b = min(len(out), a + len(ev))
    if b > a:
        out[a:b] += ev[: b - a]
    return out.astype(np.float32), (a / SR, b / SR)


def stream(
    events: list[tuple[str, float]],
    seconds: float,
    seed: int,
    event_seconds: float = 2.5,
    snr_db: float = 20.0,
    background_dbfs: float = -50.0,
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A long test stream: background noise with events inserted at known times.

    ``events`` is a list of (class, start_seconds). Each event is a fresh rendition
    (seed derived from ``seed`` and its index) of ``event_seconds`` at ``snr_db`` over the
    background. Returns (audio float32 48 kHz, [(class, start_s, end_s), ...]).
    Use seeds >= FRESH_SEED_BASE for renditions never seen in training.
    """
    out = background(seconds, seed, background_dbfs).astype(np.float64)
    truth: list[tuple[str, float, float]] = []
    for i, (cls, start) in enumerate(events):
        if cls not in CLASSES:
            raise ValueError(f"unknown sound class {cls!r}; known: {', '.join(CLASSES)}")
        ev = render(cls, seed * 1000 + i, event_seconds, background_dbfs + snr_db)
        a = round(start * SR)
        b = min(len(out), a + len(ev))
        if b <= a:
            raise ValueError(f"event {i} ({cls}) at {start}s lies outside a {seconds}s stream")
        out[a:b] += ev[: b - a]
        truth.append((cls, a / SR, b / SR))
    return out.astype(np.float32), truth
