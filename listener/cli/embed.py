"""`listener embed`: L2-normalised CLAP embeddings of texts or audio files, as JSON lines.

For scripting and debugging (compare prompts, build example banks): one JSON
object per input, ``{"input": ..., "embedding": [...]}``, as JSON lines (the default,
``--jsonl``) or one JSON array (``--json``). Audio longer than the model's window
(10 s) is embedded as its newest 10 s, like the daemon does, or window by window with
``--all-windows`` (each object then has ``start_s``). The model is ``--model DIR``,
else the config's ``model.dir``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from listener.cli import add_command, add_config_option, doc_body

if TYPE_CHECKING:
    from listener.model.modeldir import ModelDir


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "embed", help="print CLAP embeddings of texts or audio files (JSON lines)",
                    description=doc_body(__doc__), func=run)
    p.add_argument("--model", metavar="DIR",
                   help="model directory (default: model.dir of the config)")
    add_config_option(p, "config whose model.dir is used when --model is absent")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", nargs="+", metavar="T", help="texts to embed")
    g.add_argument("--audio", nargs="+", metavar="FILE", help="audio files to embed")
    p.add_argument("--precision", choices=("int8", "fp32", "fp16"), default="int8")
    p.add_argument(
        "--all-windows",
        action="store_true",
        help="audio: one embedding per 10-s window (from the start) instead of "
        "the newest 10 s only",
    )
    p.add_argument("--threads", type=int, default=0, help="0 = physical cores")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON array of the objects")
    fmt.add_argument("--jsonl", action="store_true",
                     help="print one JSON object per line (the default)")


class _Output:
    """JSON lines as they come, or (``--json``) one array at the end."""

    def __init__(self, as_array: bool) -> None:
        self.as_array = as_array
        self.items: list[dict] = []

    def __call__(self, obj: dict) -> None:
        if self.as_array:
            self.items.append(obj)
        else:
            sys.stdout.write(json.dumps(obj) + "\n")

    def close(self) -> None:
        if self.as_array:
            sys.stdout.write(json.dumps(self.items) + "\n")


def _rounded(vec: Iterable[float]) -> list[float]:
    """An embedding as JSON numbers, 7 decimals (float32 carries about that many)."""
    return [round(float(v), 7) for v in vec]


def run(args: argparse.Namespace) -> int:
    from listener.model.modeldir import ModelDir

    model = ModelDir(args.model or _config_model_dir(args.config))
    emit = _Output(args.json)
    if args.text:
        _embed_texts(model, args, emit)
    else:
        _embed_audio(model, args, emit)
    emit.close()
    return 0


def _config_model_dir(config: str | None) -> str:
    from listener.config.loader import load_config

    return str(load_config(config, check_files=False).config.model.dir)


def _embed_texts(model: ModelDir, args: argparse.Namespace, emit: _Output) -> None:
    from listener.model.text_tower import TextTower

    tower = TextTower(model, args.precision, threads=args.threads)
    for text, vec in zip(args.text, tower.embed(args.text), strict=True):
        emit({"input": text, "embedding": _rounded(vec)})


def _embed_audio(model: ModelDir, args: argparse.Namespace, emit: _Output) -> None:
    from listener.audio.decode import load_audio
    from listener.model.audio_tower import AudioTower
    from listener.model.logmel import LogMel

    logmel = LogMel.from_config(
        model.preprocessor_config, str(model.path / "preprocessor_config.json")
    )
    tower = AudioTower(model, args.precision, threads=args.threads)
    n, sr = logmel.n_samples, logmel.sample_rate
    for path in args.audio:
        audio = load_audio(path)
        if args.all_windows and audio.shape[0] > n:
            starts = list(range(0, audio.shape[0] - n + 1, n))
            if starts[-1] + n < audio.shape[0]:
                starts.append(audio.shape[0] - n)  # the tail, as a full window ending at the end
            for s in starts:
                vec = tower.embed(logmel(audio[s : s + n])[None])[0]
                emit({"input": path, "start_s": round(s / sr, 3), "embedding": _rounded(vec)})
        else:
            vec = tower.embed(logmel(audio)[None])[0]
            obj = {"input": path, "embedding": _rounded(vec)}
            if args.all_windows:
                obj["start_s"] = round(max(0, audio.shape[0] - n) / sr, 3)
            emit(obj)
