"""`listener bench`: per-window latency, sustainable hop, peak RSS, provider and ISA.

Run it on the target device (Raspberry Pi, Jetson, a NUC) before choosing
``audio.hop_seconds``: it measures the daemon's own per-window path (streaming
log-mel + the audio tower session) on generated audio. See listener/export/bench.py.
"""

from __future__ import annotations

import argparse
import json
import sys

from listener.cli import add_command, add_config_option


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "bench",
        help="measure per-window latency, the shortest sustainable hop and memory on this device",
        description="Measure the per-window work of the daemon (log-mel of one hop + the "
        "audio tower) on generated audio: latency, shortest hop sustainable with 50% "
        "headroom, peak RSS, execution provider and CPU instruction set.",
        func=run,
    )
    p.add_argument(
        "--model",
        metavar="DIR",
        help="model directory (default: model.dir of --config / the found config, else "
        "models/clap-htsat-unfused)",
    )
    add_config_option(p, "take model settings from this config")
    p.add_argument("--precision", choices=("int8", "fp32", "fp16"), help="default: config or int8")
    p.add_argument(
        "--provider", choices=("cpu", "cuda", "tensorrt"), help="default: config or cpu"
    )
    p.add_argument("--threads", type=int, help="intra-op threads; 0 = physical cores")
    p.add_argument("--runs", type=int, default=20, help="windows to time (default 20)")
    p.add_argument("--hop", type=float, default=1.0, metavar="S", help="hop in seconds (1.0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--streams", type=int, metavar="N",
                   help="instead: N streams paced at real time on one model (the daemon's "
                   "stream wiring): windows scored vs due, skipped per stream, latency, "
                   "CPU, RSS")
    p.add_argument("--seconds", type=float, default=20.0, metavar="S",
                   help="with --streams: audio per stream (default 20)")


def _model_settings(args: argparse.Namespace) -> tuple[str, str, str, int]:
    from listener.config.schema import ModelConfig

    mc = ModelConfig()
    if args.config or not args.model:
        from listener.config.loader import load_config
        from listener.errors import UserError

        try:
            mc = load_config(args.config, check_files=False, check_model=False).config.model
        except UserError:
            if args.config:
                raise  # an explicit config must be valid; a missing default one is fine
    model = args.model or str(mc.dir)
    precision = args.precision or mc.precision
    provider = args.provider or mc.provider
    threads = mc.threads if args.threads is None else args.threads
    return model, precision, provider, threads


def run(args: argparse.Namespace) -> int:
    from listener.errors import UserError
    from listener.export.bench import format_bench, run_bench

    if args.runs < 1:
        raise UserError("--runs must be at least 1")
    if args.hop <= 0:
        raise UserError("--hop must be a positive number of seconds")
    if args.threads is not None and args.threads < 0:
        raise UserError("--threads must be 0 (physical cores) or more")
    model, precision, provider, threads = _model_settings(args)
    if args.streams is not None:
        return _run_streams(args, model)
    result = run_bench(
        model, precision=precision, provider=provider, threads=threads, runs=args.runs,
        hop_s=args.hop,
    )
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(format_bench(result) + "\n")
    return 0


def _run_streams(args: argparse.Namespace, model: str) -> int:
    from listener.errors import UserError
    from listener.export.bench_streams import bench_streams, format_streams
    from listener.logs import setup_logging

    setup_logging("warning")  # on stderr: stdout is the result (--json: one object)
    if args.streams < 1 or args.seconds < 11:
        raise UserError("--streams must be at least 1 and --seconds at least 11 "
                        "(a window is 10 s)")
    result = bench_streams(model, args.streams, args.seconds, args.hop)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(format_streams(result, args.hop) + "\n")
    return 0
