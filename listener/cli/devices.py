"""`listener devices`: list the audio input devices PortAudio sees (for source.device)."""

from __future__ import annotations

import argparse
import sys

from listener.cli import add_command


def register(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "devices", help="list audio input devices (for source.device)",
                description="List the audio input devices PortAudio sees, with index, channels "
                "and default rate; put the index or (part of) the name in source.device. Exit "
                "1 when there is none (`listener demo` runs without a microphone).", func=run)


def run(args: argparse.Namespace) -> int:
    from listener.audio.mic import import_sounddevice, input_devices

    sd = import_sounddevice()
    devices = input_devices(sd)
    if not devices:
        print(
            "listener: PortAudio finds no input device (no microphone connected, or no "
            "permission: add the user to the 'audio' group). A file or stdin source still "
            "works: source: file:PATH or source: stdin",
            file=sys.stderr,
        )
        return 1
    try:
        default = sd.default.device[0]
    except Exception:
        default = None
    try:
        apis = [a["name"] for a in sd.query_hostapis()]
    except Exception:
        apis = []
    print("index  default  channels  rate     name (host API)")
    for i, d in devices:
        h = d.get("hostapi")
        api = apis[h] if isinstance(h, int) and h < len(apis) else ""
        mark = "*" if i == default else ""
        print(f"{i:>5}  {mark:^7}  {d['max_input_channels']:>8}  {int(d['default_samplerate']):>6}"
              f"   {d['name']}" + (f" ({api})" if api else ""))
    print("\nUse the index or (part of) the name as source.device in the config.")
    return 0
