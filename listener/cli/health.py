"""`listener health`: is the running daemon's processing loop alive? (a container HEALTHCHECK)

Reads the heartbeat file the processing loop touches in the state directory
(listener/service/heartbeat.py) and exits 0 when it is younger than ``--max-age``
seconds (default: the systemd unit's WatchdogSec), 1 when it is missing or stale,
2 for a config error. The state directory is the one the config names, exactly as
`listener run` resolves it, so the check reads the file the daemon writes.
"""

from __future__ import annotations

import argparse
import sys

from listener.cli import CONFIG_SEARCH, add_command, add_config_option, doc_body
from listener.service.heartbeat import MAX_AGE_SECONDS, problem


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "health",
        help="exit 0 if the running daemon's processing loop is alive (for HEALTHCHECK)",
        description=doc_body(__doc__) + f" Config search order: --config, {CONFIG_SEARCH}.",
        func=run,
    )
    add_config_option(p, "the running daemon's config file")
    p.add_argument("--max-age", type=float, default=MAX_AGE_SECONDS, metavar="SECONDS",
                   help="oldest heartbeat that still counts as alive "
                   f"(default {MAX_AGE_SECONDS:g})")


def run(args: argparse.Namespace) -> int:
    from listener.config.loader import load_config
    from listener.service.state_files import StateDir

    config = load_config(args.config, check_files=False).config
    heartbeat = StateDir(config.resolved_state_dir).heartbeat
    what = problem(heartbeat, args.max_age)
    if what is not None:
        print(f"listener: unhealthy: {what}", file=sys.stderr)
        return 1
    print(f"healthy: {heartbeat} is fresh")
    return 0
