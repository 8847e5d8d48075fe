"""The container image's entry point: fetch the model if it is missing, then be `listener`.

    python3 -m listener.container [LISTENER ARGS...]      (ENTRYPOINT of Containerfile)

Why: a container starts from nothing but its volumes. Before `listener run` the model
directory the config names (``model.dir``, e.g. /data/models/clap-htsat-unfused) is
pulled when it does not exist yet (``$LISTENER_MODEL_REPO``, default the published
Xenova/clap-htsat-unfused export), so the first start needs internet once and later
starts none; a mounted model is used as it is. Then the process *execs* `listener`
with the same arguments, so listener is PID 1 and receives SIGTERM itself (flush the
spool, publish offline, exit 0). Any other command (`scan`, `check-config`, ...) is
exec'd unchanged. The Home Assistant add-on (listener/addon.py) uses the same
:func:`ensure_model`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from listener.errors import UserError


def configured_model_dir(run_args: list[str]) -> Path | None:
    """``model.dir`` of the config `listener run run_args` would read; None when the
    config cannot be read (then `listener run` itself reports why, with file:line)."""
    from listener.config.loader import load_config

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", "-c")
    known, _ = parser.parse_known_args(run_args)
    try:
        return load_config(known.config, check_files=False, check_model=False).config.model.dir
    except UserError:
        return None


def ensure_model(model_dir: Path, repo: str | None = None) -> None:
    """Pull ``repo`` into ``model_dir`` unless it exists (ModelError, a UserError, when the
    download fails: it names the other way, mounting or exporting a model)."""
    if model_dir.exists():
        return
    from listener.export.pull import DEFAULT_REPO, pull

    repo = repo or os.environ.get("LISTENER_MODEL_REPO") or DEFAULT_REPO
    print(f"listener: model {model_dir} is missing; pulling {repo} into it (first start)",
          file=sys.stderr, flush=True)
    pull(repo, model_dir, log=lambda line: print(line, file=sys.stderr, flush=True))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["run"]
    if args[0] == "run":
        model_dir = configured_model_dir(args[1:])
        if model_dir is not None:
            try:
                ensure_model(model_dir)
            except UserError as exc:
                print(f"listener: {exc}\nlistener: or mount a model directory at {model_dir} "
                      "(`listener model export` makes one from a checkpoint)", file=sys.stderr)
                return exc.exit_code
    os.execvp("listener", ["listener", *args])
    return 127  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    sys.exit(main())
