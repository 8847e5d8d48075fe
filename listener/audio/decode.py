"""Decoding audio files to 48 kHz mono float32, the only format the pipeline sees.

soundfile (libsndfile) decodes wav/flac/ogg; soxr resamples (high quality,
also used streaming by the sources). Samples that are NaN or infinite are
replaced by 0 and counted, so they never reach the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from listener.errors import AudioError
from listener.files import atomic_write

SAMPLE_RATE = 48000


def to_mono(data: np.ndarray) -> np.ndarray:
    """[n] or [n, channels] -> [n] float32, averaging channels."""
    if data.ndim == 2:
        data = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(data, dtype=np.float32)


def sanitize(data: np.ndarray) -> tuple[np.ndarray, int]:
    """Replace NaN/inf by 0 and clip to [-1, 1]; returns (clean, number of bad samples)."""
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad:
        data = np.where(bad, 0.0, data).astype(np.float32)
    return np.clip(data, -1.0, 1.0, out=data if data.flags.writeable else None), n_bad


def resample(data: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Whole-signal resampling with soxr (the streaming sources keep their own state)."""
    if rate == target:
        return data
    import soxr

    return soxr.resample(data, rate, target, quality="HQ").astype(np.float32, copy=False)


def open_audio_file(path: str | Path) -> Any:
    """Open an audio file for reading (a ``soundfile.SoundFile``).

    The one place that turns "missing / a directory / unreadable / not audio" into an
    :class:`AudioError` naming the file: whole-file loads and the streaming file source
    both open files here.
    """
    import soundfile as sf

    p = Path(path)
    if not p.exists():
        raise AudioError(f"audio file {p} does not exist")
    if p.is_dir():
        raise AudioError(f"{p} is a directory, not an audio file")
    try:
        return sf.SoundFile(str(p))
    except PermissionError:
        raise AudioError(f"audio file {p} is not readable (check its permissions)") from None
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(
            f"cannot decode {p} as audio ({exc}); supported: wav, flac, ogg/vorbis, opus"
        ) from None


def load_audio(
    path: str | Path, start: float | None = None, end: float | None = None
) -> np.ndarray:
    """Read an audio file (optionally a [start, end) seconds cut) as 48 kHz mono float32.

    Raises :class:`AudioError` naming the file when it is missing or not audio.
    """
    import soundfile as sf

    p = Path(path)
    with open_audio_file(p) as f:
        rate = f.samplerate
        first = round((start or 0.0) * rate)
        last = round(end * rate) if end is not None else f.frames
        if start is not None and first >= f.frames:
            raise AudioError(
                f"{p}: --start {start} s is past the end of the file ({f.frames / rate:.2f} s)"
            )
        try:
            f.seek(first)
            data = f.read(max(0, min(last, f.frames) - first), dtype="float32", always_2d=True)
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise AudioError(f"cannot decode {p} as audio ({exc})") from None
    mono, _ = sanitize(to_mono(data))
    return resample(mono, rate)


def write_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE,
              mode: int | None = None) -> None:
    """Write float32 mono samples as 16-bit PCM (clips, enrolled examples), atomically: a
    reader (or a crash) never sees half a file. WAV unless the name says FLAC or AIFF;
    ``mode`` as in :func:`listener.files.atomic_write`."""
    import io

    import soundfile as sf

    kind = Path(path).suffix[1:].upper()
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), rate, subtype="PCM_16",
             format=kind if kind in ("FLAC", "AIFF") else "WAV")
    atomic_write(path, buf.getvalue(), mode=mode)


#: the shortest example recording a trigger may use (shorter ones are mostly padding)
MIN_EXAMPLE_SECONDS = 0.5


def check_example_length(samples: np.ndarray, rate: int, what: str) -> None:
    """A clear error when an example recording is too short to describe a sound.

    ``what`` names the recording in the message ("example file PATH", "the example").
    """
    from listener.errors import ConfigError

    secs = len(samples) / rate
    if secs < MIN_EXAMPLE_SECONDS:
        raise ConfigError(
            f"{what} is only {secs:.2f} s long: examples must be at least "
            f"{MIN_EXAMPLE_SECONDS} s of the sound (record one with 'listener enroll NAME "
            "--seconds 3' or cut one with 'listener enroll NAME --from FILE --start S --end E')"
        )
