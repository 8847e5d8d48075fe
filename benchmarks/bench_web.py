"""What the web page costs the daemon: RSS and CPU with the page off, and on with a live
client attached; and what each candidate web framework costs in RSS.

Runs ``listener run`` on a file paced in real time (hop 1 s, three triggers, MQTT off)
twice, measuring over the same steady stretch after a warm-up:

1. ``web.enabled: false`` (no history either);
2. ``web.enabled: true`` (history kept) with a client reading ``/api/live`` the whole
   time, as an open page does, and fetching ``/api/status`` every 5 s.

Reported: peak RSS (VmHWM) and CPU (utime+stime of the whole process) per second of
wall time, for each, and the differences. Targets: RSS within 15 MB, live updates
under 2 % of a core. ``--frameworks`` also measures, in fresh interpreters that first
import the daemon's modules, the RSS added by importing and starting each candidate
stack (those installed).

    python benchmarks/bench_web.py [--model DIR] [--seconds 40] [--frameworks] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_daemon import _daemon_cmd, _stop, free_port, proc_cpu_s, proc_hwm_mb  # noqa: E402

TARGET_RSS_MB = 15.0
TARGET_CORE_SHARE = 0.02
WARMUP_S = 8.0

FRAMEWORKS = {
    "bottle+cheroot": "import bottle, cheroot.wsgi as w; app = bottle.Bottle();"
                      "s = w.Server(('127.0.0.1', 0), app, numthreads=8); s.prepare();"
                      "threading.Thread(target=s.serve, daemon=True).start()",
    "flask+werkzeug": "import flask, werkzeug.serving as w; app = flask.Flask('x');"
                      "s = w.make_server('127.0.0.1', 0, app, threaded=True);"
                      "threading.Thread(target=s.serve_forever, daemon=True).start()",
    "falcon+cheroot": "import falcon, cheroot.wsgi as w; app = falcon.App();"
                      "s = w.Server(('127.0.0.1', 0), app, numthreads=8); s.prepare();"
                      "threading.Thread(target=s.serve, daemon=True).start()",
}
PROBE = """
import os, sys, threading, time
sys.path.insert(0, {root!r})
import listener.service.daemon, onnxruntime, numpy
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1])
base = rss()
{code}
time.sleep(0.3)
print((rss() - base) / 1024, flush=True)
os._exit(0)  # the servers' worker threads would keep the interpreter alive
"""


def write_inputs(work: Path, model: Path, seconds: float, port: int, web: bool) -> Path:
    import numpy as np

    from listener.audio.decode import write_wav

    sr = 48000
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    audio = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * 3100 * t) * (
        (t % 1.0) < 0.5)
    write_wav(work / "input.wav", audio.astype(np.float32), sr)
    cfg = {
        "model": {"dir": str(model)},
        "source": {"type": "file", "path": str(work / "input.wav"), "realtime": True},
        "audio": {"hop_seconds": 1.0},
        "triggers": [{"name": "alarm", "prompts": ["an alarm beeping"]},
                     {"name": "siren", "prompts": ["a siren wailing"]},
                     {"name": "knock", "prompts": ["someone knocking"]}],
        "mqtt": {"enabled": False},
        "web": {"enabled": web, "port": port},
        "logging": {"level": "warning", "format": "json"},
        "state_dir": str(work / "state"),
    }
    path = work / f"config-{'on' if web else 'off'}.yaml"
    path.write_text(json.dumps(cfg))
    return path


class LiveClient(threading.Thread):
    """Reads /api/live like an open page; fetches /api/status every 5 s."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.base = f"http://127.0.0.1:{port}"
        self.messages = 0

    def run(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                stream = urllib.request.urlopen(self.base + "/api/live", timeout=30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
        next_status = time.monotonic()
        with stream:
            for line in stream:
                self.messages += line.startswith(b"data:")
                if time.monotonic() >= next_status:
                    next_status += 5.0
                    urllib.request.urlopen(self.base + "/api/status", timeout=10).read()


def run_once(config: Path, seconds: float, port: int | None) -> dict[str, Any]:
    proc = subprocess.Popen(_daemon_cmd(config), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=config.parent)
    client = None
    try:
        if port is not None:
            client = LiveClient(port)
            client.start()
        time.sleep(WARMUP_S)
        cpu0, t0 = proc_cpu_s(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu = (proc_cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0)
        hwm = proc_hwm_mb(proc.pid)
    finally:
        _stop(proc)
    return {"rss_peak_mb": round(hwm, 1), "cores": round(cpu, 4),
            **({"live_messages": client.messages} if client is not None else {})}


def frameworks() -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for name, code in FRAMEWORKS.items():
        r = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT), code=code)],
                           capture_output=True, text=True, timeout=120)
        out[name] = round(float(r.stdout), 1) if r.returncode == 0 else "not installed"
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        total = WARMUP_S + args.seconds + 10
        off = write_inputs(work, args.model, total, free_port(), web=False)
        run_once(off, 1.0, None)  # fills the prompt cache and the hash memo
        r_off = run_once(off, args.seconds, None)
        port = free_port()
        r_on = run_once(write_inputs(work, args.model, total, port, web=True), args.seconds,
                        port)
    result = {"off": r_off, "on": r_on,
              "rss_delta_mb": round(r_on["rss_peak_mb"] - r_off["rss_peak_mb"], 1),
              "core_delta": round(r_on["cores"] - r_off["cores"], 4)}
    if args.frameworks:
        result["framework_rss_mb"] = frameworks()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "tests" / "assets" / "hearing_model")
    p.add_argument("--seconds", type=float, default=40.0)
    p.add_argument("--frameworks", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = measure(args)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"page off: peak RSS {r['off']['rss_peak_mb']} MB, {r['off']['cores']:.4f} cores")
        print(f"page on + live client: peak RSS {r['on']['rss_peak_mb']} MB, "
              f"{r['on']['cores']:.4f} cores, {r['on']['live_messages']} live messages")
        print(f"difference: {r['rss_delta_mb']} MB (target < {TARGET_RSS_MB}), "
              f"{r['core_delta'] * 100:.2f} % of a core (target < {TARGET_CORE_SHARE * 100} %)")
        for name, mb in r.get("framework_rss_mb", {}).items():
            print(f"framework {name}: +{mb} MB RSS")
    ok = r["rss_delta_mb"] < TARGET_RSS_MB and r["core_delta"] < TARGET_CORE_SHARE
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
