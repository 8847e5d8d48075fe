"""Decoding audio files to 48 kHz mono float32, the only format the pipeline sees.

soundfile (libsndfile) decodes wav/flac/ogg; soxr resamples (high quality,
also used streaming by the sources). Samples that are NaN or infinite are
replaced by 0 and counted, and finite samples outside [-1, 1] are clipped and
counted, so neither reaches the model.

Files are opened in one place (:func:`open_audio_file`): a file without samples is an
error naming it, and a WAV that ends before the frames its header announces (an
interrupted copy or recording) is read as far as it goes, with a warning
(:func:`audio_warning`) saying how much is there and how much was announced.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from listener.errors import AudioError
from listener.files import atomic_write

SAMPLE_RATE = 48000
#: what libsndfile (through soundfile, >= 1.1) decodes, for help texts and errors
READABLE_FORMATS = "wav, flac, ogg (vorbis, opus), mp3, aiff, caf, w64/rf64, au"


def to_mono(data: np.ndarray) -> np.ndarray:
    """[n] or [n, channels] -> [n] float32, averaging channels."""
    if data.ndim == 2:
        data = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(data, dtype=np.float32)


def sanitize(data: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Replace NaN/inf by 0 and clip to [-1, 1]; returns (clean, number of NaN/inf samples,
    number of finite samples that were outside [-1, 1] and clipped)."""
    bad = ~np.isfinite(data)
    n_bad = int(bad.sum())
    if n_bad:
        data = np.where(bad, 0.0, data).astype(np.float32)
    n_clipped = int(np.count_nonzero(np.abs(data) > 1.0))
    return np.clip(data, -1.0, 1.0, out=data if data.flags.writeable else None), n_bad, n_clipped


def resample(data: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Whole-signal resampling with soxr (the streaming sources keep their own state)."""
    if rate == target:
        return data
    import soxr

    return soxr.resample(data, rate, target, quality="HQ").astype(np.float32, copy=False)


def audio_warning(message: str, **fields: Any) -> None:
    """A problem with the audio that does not stop the work (a truncated file, clipped
    input): a warning in the log when logging is set up (the daemon), else one line on
    stderr (commands such as scan and embed, whose stdout is their output)."""
    structlog = sys.modules.get("structlog")
    if structlog is not None and structlog.is_configured():
        structlog.get_logger("listener.audio").warning(message, **fields)
    else:
        print(f"listener: warning: {message}", file=sys.stderr, flush=True)


def open_audio_file(path: str | Path) -> Any:
    """Open an audio file for reading (a ``soundfile.SoundFile``).

    The one place that turns "missing / a directory / unreadable / not audio / no
    samples" into an :class:`AudioError` naming the file, and that warns about a
    truncated WAV: whole-file loads and the streaming file source both open files here.
    """
    p = Path(path)
    f = _open_soundfile(p)
    if f.frames <= 0:
        f.close()
        raise AudioError(f"{p} has no audio samples (a header without data, e.g. a recording "
                         "that was stopped at once): record or export it again")
    announced = wav_announced_frames(p)
    if announced is not None and announced > f.frames:
        rate = f.samplerate
        audio_warning(
            f"{p} is truncated: its WAV header announces {announced / rate:.2f} s of audio but "
            f"the file ends after {f.frames / rate:.2f} s (an interrupted copy or recording?); "
            f"using the {f.frames / rate:.2f} s that are there",
            file=str(p), seconds_read=round(f.frames / rate, 3),
            seconds_announced=round(announced / rate, 3),
        )
    return f


def is_audio_file(path: str | Path) -> bool:
    """Whether libsndfile decodes ``path`` and it holds samples (no warning, no error:
    for picking the audio files of a directory)."""
    import soundfile as sf

    try:
        return Path(path).is_file() and sf.info(str(path)).frames > 0
    except Exception:  # not audio, unreadable: simply not an audio file
        return False


def parse_start_time(text: str) -> float | None:
    """An ISO 8601 date and time (``2026-12-03T14:00:00Z``, ``2026-12-03 14:00:00+01:00``)
    as UNIX seconds; a time without a zone is local time. None for anything else, a bare
    date included (it does not say when the recording started)."""
    from datetime import datetime

    text = text.strip()
    if len(text) < 16 or text[10] not in "T ":
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def recorded_start(f: Any) -> float | None:
    """When an open soundfile's recording started, from its ``date`` tag (WAV INFO ICRD,
    FLAC/Ogg DATE) if that holds a date and time; else None (event times are then
    relative to the file's start)."""
    try:
        date = f.copy_metadata().get("date")
    except (AttributeError, RuntimeError):
        return None
    return parse_start_time(date) if isinstance(date, str) else None


def _open_soundfile(p: Path) -> Any:
    """``soundfile.SoundFile(p)`` with every way it can fail as an AudioError naming ``p``."""
    import soundfile as sf

    if not p.exists():
        raise AudioError(f"audio file {p} does not exist")
    if p.is_dir():
        raise AudioError(f"{p} is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p} has no audio samples (the file is empty, 0 bytes): record or "
                         "export it again")
    try:
        return sf.SoundFile(str(p))
    except PermissionError:
        raise AudioError(f"audio file {p} is not readable (check its permissions)") from None
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(
            f"cannot decode {p} as audio ({exc}); supported: {READABLE_FORMATS}"
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
    mono, _, _ = sanitize(to_mono(data))
    return resample(mono, rate)


#: WAV data sizes that mean "length not known" (written by streaming writers such as arecord
#: before they know it): a file with one of these is not truncated, just never finished
_UNKNOWN_DATA_SIZES = range(0x7FFF0000, 0x1_0000_0000)
#: WAVE format tags whose frames are fixed-size blocks: PCM, IEEE float, A-law, mu-law,
#: extensible
_FIXED_FRAME_FORMATS = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)


def wav_announced_frames(path: Path) -> int | None:
    """Frames the ``data`` chunk of a RIFF/WAVE file announces, or None (not a RIFF WAV,
    a compressed format, or a length left unknown by a streaming writer).

    libsndfile quietly shortens a data chunk that runs past the end of the file, so
    comparing this with ``SoundFile.frames`` is how a truncated WAV is noticed."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            for _ in range(64):  # a WAV has a handful of chunks before its data
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(min(size, 16))
                    if len(fmt) < 14:
                        return None
                    tag, _channels, _rate, _bytes_per_s, block_align = struct.unpack(
                        "<HHIIH", fmt[:14])
                    if tag not in _FIXED_FRAME_FORMATS:
                        return None
                    f.seek(size + (size & 1) - len(fmt), 1)
                elif cid == b"data":
                    if not block_align or size in _UNKNOWN_DATA_SIZES:
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), 1)
    except OSError:
        return None
    return None


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
