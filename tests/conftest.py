"""Shared fixtures live in one module per area, registered here.

- tests/fixtures_model.py: a tiny random ClapModel checkpoint and its export.
- tests/fixtures_hearing.py: the small trained CLAP that actually hears (for detection).
- tests/fixtures_broker.py: a real mosquitto on a free loopback port.
- tests/fixtures_fs.py: small real file systems (tmpfs) that fill up or are read-only.
- tests/fixtures_daemon.py: `listener run` as a real process with its log (``procs``).

Plain helpers that are not fixtures (CLI runner, clean-error assertion, cosine, free
port, config writer) are in tests/helpers.py.
"""

import importlib.util

pytest_plugins = [
    name
    for name in (
        "tests.fixtures_model",
        "tests.fixtures_hearing",
        "tests.fixtures_broker",
        "tests.fixtures_fs",
        "tests.fixtures_daemon",
    )
    if importlib.util.find_spec(name) is not None
]
