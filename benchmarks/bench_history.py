"""The history database: search time over a day, disk per day, what float16 costs.

1. Writes one day at hop 1 s (86,400 windows, ``--dim`` dimensions, 512 for CLAP) into
   a fresh history.sqlite3 through HistoryWriter (the daemon's writer), in batches like
   the daemon's writer thread, and reports the file size: the disk cost of a day.
2. Times a search over all of it (HistoryReader + score_windows + merge_spans, what
   `listener search` and the page's /api/search do after embedding the text): median
   of ``--repeats`` runs on a warm page cache. Target: under 0.3 s.
3. float16 against float32: the largest and the mean absolute change in cosine
   between stored windows and a query, on random unit vectors of ``--dim`` and on real
   embeddings of the test model (tests/assets/hearing_model) of a generated stream.

    python benchmarks/bench_history.py [--dim 512] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# as `listener` sets it (listener/__main__.py): threaded OpenBLAS only spins here
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from listener.history.search import merge_spans, score_windows  # noqa: E402
from listener.history.store import HistoryReader, HistoryWriter, WindowRow  # noqa: E402

DAY = 86400
TARGET_SEARCH_S = 0.3


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill_day(path: Path, dim: int) -> float:
    rng = np.random.default_rng(0)
    writer = HistoryWriter(path, embeddings_hours=48, embeddings_max_mb=10_000)
    t0, now = time.perf_counter(), time.time()
    for start in range(0, DAY, 3600):
        vecs = unit(rng, 3600, dim)
        writer.add([], [WindowRow(now - DAY + start + i, "default", 10.0, -40.0, vecs[i])
                        for i in range(3600)])
    writer.retain()
    writer.close()
    return time.perf_counter() - t0


def time_search(path: Path, dim: int, repeats: int) -> list[float]:
    query = unit(np.random.default_rng(1), 1, dim)[0]
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        reader = HistoryReader(path)
        spans = merge_spans(score_windows(reader, query, time.time() - DAY - 60), top=10)
        reader.close()
        times.append(time.perf_counter() - t0)
        assert spans
    return times


def f16_effect(emb: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    exact = emb @ queries.T
    half = emb.astype(np.float16).astype(np.float32) @ queries.T
    diff = np.abs(exact - half)
    return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean())}


def hearing_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """Window embeddings of a generated stream and prompt embeddings, test model."""
    from listener.model.stack import ModelStack
    from tests.hearing import sounds

    model = ROOT / "tests" / "assets" / "hearing_model"
    with tempfile.TemporaryDirectory() as tmp:
        stack = ModelStack(model, "int8", "cpu", 1, Path(tmp) / "prompts", check_hashes=False)
        audio, _ = sounds.stream([("alarm", 5.0), ("siren", 25.0), ("knocking", 45.0)], 60.0,
                                 seed=sounds.FRESH_SEED_BASE + 5, snr_db=20.0)
        emb = stack.window_embedder()
        n = stack.logmel.n_samples
        windows = [emb.embed(audio[e - n:e], e) for e in range(n, audio.size + 1, 48000)]
        prompts = stack.embed_texts(["an alarm beeping", "a siren wailing", "someone knocking"])
    return np.asarray(windows, np.float32), np.asarray(prompts, np.float32)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.sqlite3"
        fill_s = fill_day(path, args.dim)
        size = sum(p.stat().st_size for p in Path(tmp).glob("history.sqlite3*"))
        times = time_search(path, args.dim, args.repeats)
    rng = np.random.default_rng(2)
    windows, prompts = hearing_embeddings()
    return {
        "dim": args.dim, "windows": DAY, "write_s": round(fill_s, 2),
        "mb_per_day": round(size / 1e6, 1),
        "search_s_median": round(statistics.median(times), 3),
        "search_s_max": round(max(times), 3), "target_search_s": TARGET_SEARCH_S,
        "f16_random": f16_effect(unit(rng, 20000, args.dim), unit(rng, 10, args.dim)),
        "f16_test_model": f16_effect(windows, prompts),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = measure(args)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"one day at hop 1 s: {r['windows']} windows x {r['dim']} dims -> "
              f"{r['mb_per_day']} MB on disk (written in {r['write_s']} s)")
        print(f"search over the day: median {r['search_s_median']} s, max {r['search_s_max']} s "
              f"(target < {TARGET_SEARCH_S} s)")
        for k in ("f16_random", "f16_test_model"):
            print(f"float16 vs float32 cosine, {k[4:]}: max |diff| {r[k]['max_abs']:.5f}, "
                  f"mean {r[k]['mean_abs']:.6f}")
    return 0 if r["search_s_median"] < TARGET_SEARCH_S else 1


if __name__ == "__main__":
    sys.exit(main())
