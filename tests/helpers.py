"""Plain helpers shared by many test files (fixtures live in tests/fixtures_*.py).

Why one module: the same few things (run the CLI, check that a user error is clean,
compare embeddings, find a port, write a config) were written out again in each test
file, each copy a little different. Here each has one definition, so a test says what
it checks and the mechanics stay the same everywhere.

- The CLI as a user runs it: :func:`run_cli` (one-shot, returns the finished
  ``CompletedProcess``) and :func:`start_cli` (long-running, returns the ``Popen``)
  run ``python -m listener`` (or a test module such as ``tests.stalling_daemon``)
  under :func:`cli_env`; :func:`running` and :func:`stop` end such a process within a
  bounded wait. :func:`run_main` runs the same entry point in-process and returns the
  same ``CompletedProcess`` shape.
- User errors: :func:`assert_clean_error` (exit 2, no traceback, stderr ending in a
  ``listener: `` line, the expected words) and :func:`assert_no_traceback` for log texts.
- :func:`cosine` of embeddings, :func:`onnx_session` for an ONNX file, :func:`free_port`
  on loopback, :func:`copy_dir`.
- Config files: :func:`config_data` (the dict: model dir, triggers, other sections)
  and :func:`write_config` (that dict as ``config.yaml``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the heavy imports wait until a helper needs them
    import onnxruntime as ort
    import pytest

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

#: what a developer's shell or a systemd unit could set for the listener itself; a test
#: that wants one of them passes it explicitly
OUTSIDE_VARIABLES = ("LISTENER_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

Arg = str | os.PathLike[str]
Output = int | IO[Any] | None


# --- the CLI in a subprocess ---------------------------------------------------------------


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment for a CLI subprocess: without :data:`OUTSIDE_VARIABLES`,
    with this checkout first on PYTHONPATH (the child imports the ``listener`` and
    ``tests`` the test imported, from any cwd), no hub telemetry, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in OUTSIDE_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env.update(extra or {})
    return env


def python_m(module: str, *args: Arg) -> list[str]:
    """The command line ``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def start_cli(
    *args: Arg,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    module: str = "listener",
    stdout: Output = subprocess.PIPE,
    stderr: Output = subprocess.PIPE,
    stdin: Output = None,
) -> subprocess.Popen[str]:
    """``python -m listener args...`` (or ``-m module``) started and left running (a
    daemon, a test driver). ``env`` adds to :func:`cli_env`; ``cwd`` defaults to the
    test's own. End it with :func:`stop`; guard it with :func:`running`."""
    cmd = python_m(module, *args)
    return subprocess.Popen(cmd, cwd=cwd, env=cli_env(env), stdin=stdin, stdout=stdout,
                            stderr=stderr, text=True)


def stop(
    proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30
) -> tuple[int, str, str]:
    """Send ``sig`` (if ``proc`` still runs), wait up to ``timeout`` s for it to exit, kill
    it after that; (exit code, stdout, stderr) of what was piped."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
    return proc.returncode, out or "", err or ""


@contextmanager
def running(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """``with running(start_cli(...)) as proc:``: whatever happens inside, a process still
    running at the end is killed and reaped (bounded)."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def run_cli(
    *args: Arg,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    module: str = "listener",
) -> subprocess.CompletedProcess[str]:
    """:func:`start_cli` to completion, output captured as text: like ``subprocess.run``,
    a process that outlives ``timeout`` is killed and TimeoutExpired raised."""
    with running(start_cli(*args, cwd=cwd, env=env, module=module)) as proc:
        out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_main(capsys: pytest.CaptureFixture[str], *args: Arg) -> subprocess.CompletedProcess[str]:
    """The CLI entry point in-process (no ~0.5 s interpreter start): its exit code and
    what it printed, as the ``CompletedProcess`` :func:`run_cli` would give."""
    from listener.__main__ import main

    argv = [str(a) for a in args]
    code = main(argv)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


# --- user errors -----------------------------------------------------------------------------


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def assert_clean_error(
    result: subprocess.CompletedProcess[str], *needles: str, code: int = 2, alone: bool = False
) -> None:
    """``result`` failed the way a user mistake must: exit ``code``, no traceback, stderr
    ending in the message line ``listener: ...`` (after the config problems or log lines
    a command may print first; with ``alone``, nothing before it), and each of ``needles``
    in stderr."""
    err = result.stderr
    assert result.returncode == code, (result.returncode, result.stdout, err)
    assert_no_traceback(err)
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("listener: "), err
    if alone:
        assert err.startswith("listener: "), err
    for needle in needles:
        assert needle in err, (needle, err)


# --- numbers, ports, files ------------------------------------------------------------------


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``a`` with the same row of ``b``, in float64."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def onnx_session(path: Path, outputs: list[str] | None = None) -> ort.InferenceSession:
    """A quiet one-thread CPU session of the ONNX file ``path``; with ``outputs``, those
    intermediate tensors are graph outputs too (and graph optimisation is off, so they
    keep their names)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    if outputs is None:
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    import onnx

    m = onnx.load(str(path))
    for name in outputs:
        m.graph.output.append(onnx.ValueInfoProto(name=name))
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def copy_dir(src: Path, dst: Path) -> Path:
    """A copy of the directory ``src`` at ``dst`` (to break it without touching ``src``)."""
    shutil.copytree(src, dst)
    return dst


# --- config files -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """``value`` with every Path as a string (for YAML and pydantic alike)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def config_data(
    model_dir: Arg, triggers: list[dict[str, Any]], **sections: Any
) -> dict[str, Any]:
    """A config as a dict: ``model.dir`` (plus the keys of a ``model=`` section), the
    other sections as given, then ``triggers``; Paths anywhere become strings."""
    model = {"dir": model_dir, **sections.pop("model", {})}
    return _plain({"model": model, **sections, "triggers": triggers})


def write_config(
    directory: Path,
    model_dir: Arg,
    triggers: list[dict[str, Any]],
    name: str = "config.yaml",
    **sections: Any,
) -> Path:
    """``directory/name`` holding :func:`config_data` as YAML; returns its path."""
    from ruamel.yaml import YAML

    path = directory / name
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.representer.sort_base_mapping_type_on_output = False  # keep the sections' order
    with path.open("w", encoding="utf-8") as f:
        yaml.dump(config_data(model_dir, triggers, **sections), f)
    return path
