"""`listener model export|pull|verify|info`: get a model directory and check it.

Heavy imports (torch for export, onnxruntime for verify) happen inside the
sub-commands so `listener --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys

from listener.cli import add_command
from listener.model.modeldir import PRECISIONS


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "model",
        help="export, download, verify or describe a CLAP model directory",
        description="Get a CLAP ONNX model directory (export a checkpoint or pull a published "
        "export) and check how far its int8 towers are from fp32.",
    )
    msub = p.add_subparsers(dest="model_command", metavar="ACTION")
    p.set_defaults(func=_help(p))

    _add_export(msub)
    _add_pull(msub)
    _add_verify(msub)
    _add_info(msub)


def _add_export(msub: argparse._SubParsersAction) -> None:
    """`listener model export`"""
    e = add_command(msub, "export", help="export a transformers CLAP checkpoint to ONNX (+int8)",
                    description="Export a transformers CLAP checkpoint (a directory or a "
                    "Hugging Face id) to the ONNX layout listener reads, check both towers "
                    "against PyTorch and quantise them to int8. Needs pip install "
                    "'listener[export]' (torch + transformers).")
    e.add_argument("--checkpoint", required=True, help="checkpoint directory or Hugging Face id")
    e.add_argument("--out", required=True, help="model directory to create")
    e.add_argument("--no-quantize", action="store_true", help="write fp32 towers only")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    e.add_argument("--force", action="store_true", help="replace a non-empty --out")
    e.add_argument("--attention-op", action="store_true",
                   help="window attention as the ONNX Attention op (opset 23, onnxruntime >= "
                   "1.23; checked against the plain graph, which is kept when it differs or "
                   "the runtime is older); slower on x86 in benchmarks/README.md, try it on "
                   "your board with `listener bench`")
    e.set_defaults(func=run_export)


def _add_pull(msub: argparse._SubParsersAction) -> None:
    """`listener model pull`"""
    u = add_command(msub, "pull", help="download a published ONNX export (Hugging Face hub)",
                    description="Download a published transformers.js/optimum CLAP ONNX "
                    "export (resumable, sha256-checked) and write its listener.json, with "
                    "the thresholds that suit CLAP. Needs internet (HF_ENDPOINT, HF_TOKEN, "
                    "HF_HUB_OFFLINE are honoured).")
    u.add_argument("repo_id", nargs="?", default=None, help="default Xenova/clap-htsat-unfused")
    u.add_argument("--dir", default=None, help="destination (default models/<name>)")
    u.add_argument("--revision", default="main")
    u.add_argument("--exact-text", action="store_true",
                   help="also fetch the fp32 text tower (onnx/text_model.onnx, about 500 MB "
                   "for clap-htsat-unfused; the int8 one is about 125 MB): prompts are then "
                   "embedded exactly, once each (cached)")
    u.set_defaults(func=run_pull)


def _add_verify(msub: argparse._SubParsersAction) -> None:
    """`listener model verify`"""
    v = add_command(msub, "verify", help="int8 vs fp32: embedding cosines and prompt top-1",
                    description="Check the files against listener.json, then compare the "
                    "towers at --precision with --reference on your audio (or generated "
                    "signals): raw and centred cosine of the embeddings and top-1 agreement "
                    "of prompt scores.")
    v.add_argument("dir", help="model directory")
    v.add_argument(
        "--audio",
        nargs="+",
        default=None,
        metavar="FILE",
        help="audio files (newest 10 s of each); default: generated test signals",
    )
    v.add_argument("--precision", default="int8", choices=tuple(PRECISIONS),
                   help="precision under test (default int8)")
    v.add_argument("--reference", default="fp32", choices=tuple(PRECISIONS),
                   help="reference precision (default fp32)")
    v.add_argument("--threads", type=int, default=0, help="0 = physical cores")
    v.add_argument("--json", action="store_true", help="print the report as JSON")
    v.set_defaults(func=run_verify)


def _add_info(msub: argparse._SubParsersAction) -> None:
    """`listener model info`"""
    i = add_command(msub, "info", help="what a model directory holds; --hashes checks sha256",
                    description="Describe a model directory: its files, precisions, "
                    "embedding size, source and the thresholds it recommends (listener.json); "
                    "--hashes compares "
                    "every file with listener.json.")
    i.add_argument("dir", help="model directory")
    i.add_argument("--hashes", action="store_true", help="check files against listener.json")
    i.add_argument("--json", action="store_true", help="print the description as JSON")
    i.set_defaults(func=run_info)


def _help(p: argparse.ArgumentParser):
    def show(_args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    return show


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_export(args: argparse.Namespace) -> int:
    from listener.export.exporter import export_model

    export_model(
        args.checkpoint,
        args.out,
        quantize=not args.no_quantize,
        opset=args.opset,
        force=args.force,
        log=_err,
        attention_op=args.attention_op,
    )
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from listener.export.pull import DEFAULT_FILES, DEFAULT_REPO, EXACT_TEXT_FILE, pull

    repo = args.repo_id or DEFAULT_REPO
    files = DEFAULT_FILES + ((EXACT_TEXT_FILE,) if args.exact_text else ())
    pull(repo, args.dir, files=files, revision=args.revision, log=_err)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from listener.export.verify import format_report, verify_model
    from listener.model.modeldir import ModelDir

    model = ModelDir(args.dir)
    checked = model.verify_hashes()  # a damaged file is reported before any comparison
    report = verify_model(model, args.audio, args.precision, args.reference, args.threads)
    report["hashes_checked"] = checked
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from listener.export.verify import model_info
    from listener.model.modeldir import ModelDir, recommended_settings

    model = ModelDir(args.dir)
    info = model_info(model)
    info["recommended"] = recommended_settings(model.path) or None
    if args.hashes:
        checked = model.verify_hashes()
        info["hashes_checked"] = checked
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for k, v in info.items():
        if k == "files":
            print("files:")
            for name, size in v.items():
                print(f"  {name:<36} {size / 1e6:9.1f} MB")
        elif k == "hashes_checked":
            msg = (
                f"{len(v)} files match listener.json" if v else "no listener.json: nothing to check"
            )
            print(f"sha256: {msg}")
        else:
            print(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}")
    return 0
