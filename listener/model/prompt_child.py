"""Embed prompts in a short-lived child process, so the caller's memory never peaks.

Why: the text tower is several times the audio tower. Loading it into the daemon for
a prompt the cache does not have yet (a cold start, or a SIGHUP that adds a prompt)
raised the daemon's peak RSS from 153 MB to 517 MB with the full-size model: an
OOM kill on a 512 MB board, and the peak stays counted against the process for
good (onnxruntime's arena and the allocator do not hand everything back). A child
that loads the tower, embeds, prints the vectors and exits returns all of it.

Protocol: the request (model dir, precision, provider, threads, prompts) is JSON on
the child's stdin; the answer is JSON on its stdout, ``{"vectors": [[...], ...]}``
in the order asked. A user-fixable problem (a damaged tokenizer, a missing model
file) exits 2 with the message on stderr and is raised again in the parent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from listener.errors import ModelError, UserError

#: a Pi loads the full-size text tower and embeds a few prompts in well under a minute
TIMEOUT_S = 600.0


def embed_in_child(model_dir: Path, precision: str, provider: str, threads: int,
                   prompts: list[str], timeout: float = TIMEOUT_S) -> np.ndarray:
    """[N, D] L2-normalised embeddings of ``prompts`` computed by a child process."""
    request = {"model_dir": str(model_dir), "precision": precision, "provider": provider,
               "threads": threads, "prompts": list(prompts)}
    try:
        r = subprocess.run([sys.executable, "-m", "listener.model.prompt_child"],
                           input=json.dumps(request), capture_output=True, text=True,
                           timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ModelError(f"embedding {len(prompts)} prompt(s) with the text tower of "
                         f"{model_dir} took longer than {timeout:.0f} s; check the machine's "
                         "load and memory, or embed them once with `listener embed`") from None
    if r.returncode != 0:
        lines = [s for s in r.stderr.strip().splitlines() if s.strip()]
        why = lines[-1] if lines else f"exit code {r.returncode}"
        raise ModelError(f"embedding prompts with the text tower of {model_dir} failed: {why}")
    vectors = np.asarray(json.loads(r.stdout)["vectors"], dtype=np.float32)
    if vectors.shape[0] != len(prompts):
        raise ModelError(f"text tower child returned {vectors.shape[0]} vectors for "
                         f"{len(prompts)} prompts")
    return vectors


def main() -> int:
    from listener.model.modeldir import ModelDir
    from listener.model.text_tower import TextTower

    req = json.loads(sys.stdin.read())
    try:
        tower = TextTower(ModelDir(req["model_dir"]), req["precision"], req["provider"],
                          int(req["threads"]))
        vecs = tower.embed(list(req["prompts"]))
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 2
    # repr of a float32 widened to float64 round-trips exactly through JSON
    json.dump({"vectors": [[float(v) for v in row] for row in vecs]}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
