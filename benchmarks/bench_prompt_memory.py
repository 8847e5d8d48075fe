"""Peak RSS of a cold start (prompts not cached) vs a warm one, text tower in or out of process.

Issue 18: with the full-size model a warm daemon peaked at 153 MB, a cold one at 517 MB,
because the int8 text tower was loaded in the daemon's process to embed the missing
prompts. Now a child process embeds them (listener/model/prompt_child.py) with the most
accurate text tower present (fp32 here). Cases: "in_process" = before (int8 text in the
process), "child" = now; each cold (empty prompt cache) then warm. Each case
runs in its own fresh process ("driver"): load the model stack the way the daemon does
(`load_model` + `build_pipeline`, int8, 1 thread), embed the config's prompts (3 triggers
+ background), run 15 s of audio through the pipeline, then read the process's VmHWM.
The child's own memory is not the caller's (it is returned when the child exits); its
peak is printed too, from ``RUSAGE_CHILDREN``.

    python benchmarks/bench_prompt_memory.py --model /tmp/full_model [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = ["smoke alarm beeping", "a dog barking", "glass breaking", "a baby crying"]


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmHWM in /proc/self/status")


def driver(model: Path, state: Path, audio: Path, isolate: bool, text: str) -> dict:
    from listener.config.schema import Config
    from listener.service.assemble import build_pipeline, load_model

    cfg = Config.model_validate({
        "model": {"dir": str(model), "precision": "int8", "threads": 1},
        "state_dir": str(state),
        "source": {"type": "file", "path": str(audio)},
        "background": [PROMPTS[-1]],
        "mqtt": {"enabled": False},
        "triggers": [{"name": f"t{i}", "prompts": [p]} for i, p in enumerate(PROMPTS[:-1])],
    })
    stack = load_model(cfg)
    if text not in ("best", stack.text_precision):  # the old default: int8 text
        from listener.model.prompt_bank import PromptBank

        stack.bank = PromptBank(stack.model, stack.bank.cache_dir, text, threads=1)
    stack.bank.isolate = isolate
    pipe = build_pipeline(cfg, [], stack=stack)
    pipe.open()
    pipe.run(threading.Event())
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"peak_rss_mb": vm_hwm_mb(), "child_peak_rss_mb": child,
            "misses": stack.bank.misses, "windows": pipe.stats()["windows"],
            "text_precision": stack.bank.precision}


def run_case(model: Path, state: Path, audio: Path, isolate: bool, text: str) -> dict:
    r = subprocess.run([sys.executable, __file__, "--driver", "--model", str(model),
                        "--state", str(state), "--audio", str(audio),
                        "--isolate", str(int(isolate)), "--text", text],
                       capture_output=True, text=True, timeout=1200, check=False)
    if r.returncode != 0:
        raise SystemExit(f"driver failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--audio", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--isolate", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--text", default="best", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.driver:
        print(json.dumps(driver(args.model, args.state, args.audio, bool(args.isolate),
                                args.text)))
        return
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-prompt-mem-") as tmp_s:
        tmp = Path(tmp_s)
        audio = tmp / "noise.wav"
        rng = np.random.default_rng(0)
        sf.write(audio, (rng.standard_normal(15 * 48000) * 0.03).astype("float32"), 48000)
        # before: int8 text tower in the process; after: the best text tower in a child
        for name, isolate, text in (("in_process", False, "int8"), ("child", True, "best")):
            state = tmp / name
            out[f"cold_{name}"] = run_case(args.model, state, audio, isolate, text)
            out[f"warm_{name}"] = run_case(args.model, state, audio, isolate, text)
    if args.json:
        print(json.dumps(out))
        return
    for k, v in out.items():
        print(f"{k:18s} peak RSS {v['peak_rss_mb']:6.1f} MB  ({v['text_precision']} text, "
              f"child peak "
              f"{v['child_peak_rss_mb']:6.1f} MB, prompts embedded {v['misses']}, "
              f"windows {v['windows']})")
    warm = out["warm_child"]["peak_rss_mb"]
    for name in ("in_process", "child"):
        cold = out[f"cold_{name}"]["peak_rss_mb"]
        print(f"cold - warm, text tower {name}: {cold - warm:+.1f} MB "
              f"(target <= +60 MB: {'met' if cold - warm <= 60 else 'NOT met'})")


if __name__ == "__main__":
    main()
