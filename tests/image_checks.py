"""What script/test-image checks in the built images: podman helpers and one function per check.

Kept apart from the script (which makes the base image, builds, reports the size and runs
these in order) so each stays short. Every check prints ``ok  ...`` or ends the run with
``script/test-image: FAILED: ...``; every wait is bounded. The images are run with the
repository's podman settings (script/containers.conf: runc, no default ulimits) in the
script's own image store, so nothing here touches other images on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from listener.audio.decode import write_wav
from tests.fixtures_broker import Mosquitto, Subscriber
from tests.hearing import sounds
from tests.helpers import ROOT, free_port
from tests.supervisor_stub import TOKEN, Supervisor

IMAGE = "localhost/listener:test"
ADDON_IMAGE = "localhost/listener-addon:test"
HEARING_MODEL = ROOT / "tests" / "assets" / "hearing_model"
DEVICE = "imagetest"
# Podman keeps the script's images (the base, the build cache) in a store of its own, so
# the cache survives between runs and the clean-up at the end touches nothing else.
STORE = Path(os.environ.get("LISTENER_IMAGE_STORE", "/var/lib/listener-test-image"))
PODMAN = ["podman", "--root", str(STORE / "storage"),
          "--runroot", str(Path("/run/listener-test-image") / STORE.name)]
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "script" / "containers.conf")}
PODMAN_LOG = re.compile(r'^time="[^"]*" level=\w+ msg=')


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def ok(text: str) -> None:
    print(f"ok  {text}", flush=True)


def fail(text: str) -> None:
    raise SystemExit(f"script/test-image: FAILED: {text}")


def podman(*args: str, timeout: float = 120, check: bool = True, capture: bool = True,
           stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], env=PODMAN_ENV, timeout=timeout, text=True,
                          capture_output=capture, input=stdin)
    if capture:  # podman's own log lines (no systemd here to schedule healthchecks)
        proc.stderr = "".join(line for line in proc.stderr.splitlines(keepends=True)
                              if not PODMAN_LOG.match(line))
    if check and proc.returncode != 0:
        fail(f"podman {' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def image_size(name: str) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", name).stdout.strip())


def run(*args: str, mounts: tuple[tuple[Path, str], ...] = (), entrypoint: str | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    cmd = ["run", "--rm", "--network=host"]
    for host, inside in mounts:
        cmd += ["-v", f"{host}:{inside}:ro"]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint]
    return podman(*cmd, IMAGE, *args, timeout=timeout, check=False)


def succeeded(proc: subprocess.CompletedProcess[str], what: str
              ) -> subprocess.CompletedProcess[str]:
    if proc.returncode != 0:
        fail(f"{what} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


# --- 3. one-shot commands in the image -------------------------------------------------------


def check_user() -> None:
    step("non-root user in group audio")
    uid = run("-u", entrypoint="id").stdout.strip()
    groups = run("-Gn", entrypoint="id").stdout.split()
    if not uid or uid == "0":
        fail(f"the image runs as uid {uid!r}")
    if "audio" not in groups:
        fail(f"the image's user is not in group audio: {groups}")
    ok(f"id -u = {uid}, groups {groups}")
    roots = run("-c", "import ssl; print(ssl.create_default_context().cert_store_stats()"
                "['x509_ca'])", entrypoint="python3").stdout.strip()
    if not roots.isdigit() or int(roots) == 0:
        fail(f"no TLS root certificates in the image ({roots!r}): the first-start model "
             "pull and MQTT over TLS need them")
    ok(f"{roots} TLS root certificates (model pull, MQTT TLS)")


def check_example_config() -> None:
    step("check-config on config.example.yaml")
    # its model.dir is relative to the file: /config/models/clap-htsat-unfused
    succeeded(run("check-config", "--quiet", mounts=(
        (ROOT / "config.example.yaml", "/config/config.yaml"),
        (HEARING_MODEL, "/config/models/clap-htsat-unfused"))), "check-config")
    ok("valid")


SCAN_CONFIG = """\
model:
  dir: /model
defaults: {on_threshold: 0.75, off_threshold: 0.6, on_windows: 2, off_seconds: 2}
triggers:
  - name: smoke_alarm
    prompts: ["a smoke detector beeping"]
  - name: door_knock
    prompts: ["someone knocking on the door"]
mqtt:
  enabled: false
"""


def smoke_scan(work: Path) -> None:
    step("offline smoke test: scan a sample with the shipped test model")
    proc = succeeded(run("scan", "/input/sample.wav", "--config", "/input/scan.yaml", "--jsonl",
                         mounts=((HEARING_MODEL, "/model"), (work, "/input"))), "scan")
    starts = sorted({json.loads(line)["trigger"] for line in proc.stdout.splitlines()
                     if line.startswith("{") and json.loads(line)["type"] == "start"})
    if starts != ["door_knock", "smoke_alarm"]:
        fail(f"scan found starts of {starts}, expected door_knock and smoke_alarm\n"
             f"{proc.stdout}{proc.stderr}")
    ok(f"starts of {', '.join(starts)}")


# the scan's config with the model where a first start pulls it
FIRST_START_CONFIG = SCAN_CONFIG.replace("dir: /model", "dir: /data/models/clap-htsat-unfused")


def first_start_without_network(work: Path) -> None:
    """The entry point pulls a missing model; without a network that fails fast and says
    how else to get one (--network=none: the same result on any machine)."""
    step("first start without a model and without network")
    cmd = ["run", "--rm", "--network=none",
           "-v", f"{work / 'first.yaml'}:/config/config.yaml:ro", IMAGE]
    proc = podman(*cmd, timeout=120, check=False)
    err = proc.stderr
    if proc.returncode != 2 or "Traceback" in err or "mount a model directory" not in err:
        fail(f"exit {proc.returncode}, expected 2 with a clear error:\n{err}")
    ok("exit 2: " + err.strip().splitlines()[-2][:100])


def smoke_demo(work: Path) -> None:
    """`listener demo` from the installed package: its model, sample and config ship inside
    the image, so nothing is mounted; each of its three sounds must start an event."""
    step("offline smoke test: listener demo")
    proc = succeeded(run("demo", "--fast", "--no-mqtt"), "listener demo")
    started = {line.split()[2] for line in proc.stdout.splitlines()
               if len(line.split()) > 2 and line.split()[1] == "START"}
    if started != {"smoke_alarm", "door_knock", "siren"}:
        fail(f"demo started {sorted(started)}, expected smoke_alarm, door_knock, siren\n"
             f"{proc.stdout}{proc.stderr}")
    ok(f"demo events started for {', '.join(sorted(started))}")


# --- 4. the daemon against a broker on this host ---------------------------------------------


RUN_CONFIG = """\
model:
  dir: /model
source:
  type: file
  path: /input/long.wav
  realtime: true
defaults: {{on_threshold: 0.75, off_threshold: 0.6, on_windows: 1, off_seconds: 1,
            cooldown_seconds: 0, margin: 0}}
triggers:
  - name: smoke_alarm
    prompts: ["a smoke detector beeping"]
mqtt:
  host: 127.0.0.1
  port: {port}
  device_id: {device}
  reconnect_min_seconds: 0.2
  reconnect_max_seconds: 1
"""


@contextlib.contextmanager
def container(name: str, *args: str) -> Iterator[str]:
    podman("rm", "-f", "--ignore", name, check=False)
    podman("run", "-d", "--name", name, *args, timeout=120)
    try:
        yield name
    finally:
        podman("rm", "-f", "--ignore", name, check=False, timeout=60)


def wait_for(what: str, timeout: float, probe) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.5)  # polling another process's state; the wait itself is bounded
    fail(f"timed out after {timeout:.0f} s waiting for {what}")
    return None


def health(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    if extra:
        return podman("exec", name, "listener", "health", *extra, check=False, timeout=60)
    return podman("healthcheck", "run", name, check=False, timeout=60)


def daemon_against_broker(work: Path) -> None:
    step("listener run against mosquitto on this host")
    broker = Mosquitto(work / "broker")
    broker.start()
    base = f"listener/{DEVICE}"
    sub = Subscriber(broker, f"{base}/#", "homeassistant/#")
    try:
        (work / "run.yaml").write_text(RUN_CONFIG.format(port=broker.port, device=DEVICE))
        name = f"listener-test-{os.getpid()}"
        config = work / "run.yaml"
        with container(name, "--network=host", "-v", f"{HEARING_MODEL}:/model:ro",
                       "-v", f"{work}:/input:ro", "-v", f"{config}:/config/config.yaml:ro", IMAGE):
            sub.wait_topic(f"{base}/availability", 120, lambda m: m.payload == b"online")
            ok("availability online")
            # device-based discovery (the default form): one config naming every entity
            sub.wait_topic(f"homeassistant/device/{DEVICE}/config", 30,
                           lambda m: b"smoke_alarm" in m.payload)
            ok("discovery published")
            wait_for("the HEALTHCHECK to pass", 60, lambda: health(name).returncode == 0)
            ok("HEALTHCHECK passes while running")
            event = sub.wait_topic(f"{base}/smoke_alarm/event", 60)
            ok(f"event published: {json.loads(event.payload)['event_type']}")
            stalled_loop_is_unhealthy(name)
            podman("kill", "--signal", "TERM", name)
            code = podman("wait", name, timeout=60).stdout.strip()
            if code != "0":
                fail(f"exit code {code} after SIGTERM\n{podman('logs', name).stderr}")
            ok("SIGTERM -> exit 0")
            last = sub.on(f"{base}/availability")[-1].payload
            if last != b"offline":
                fail(f"availability after SIGTERM is {last!r}, not offline")
            ok("availability offline")
    finally:
        sub.close()
        broker.stop()


def stalled_loop_is_unhealthy(name: str) -> None:
    """SIGSTOP freezes the whole daemon: its heartbeat file ages and the check says so.
    (--max-age 3 instead of the HEALTHCHECK's 30 s keeps this step short.)"""
    podman("kill", "--signal", "STOP", name)
    try:
        wait_for("the health check to report the stall", 30,
                 lambda: health(name, "--max-age", "3").returncode == 1)
    finally:
        podman("kill", "--signal", "CONT", name)
    ok("health check fails while the processing loop is stopped")


# --- 5. the Home Assistant add-on -----------------------------------------------------------


def addon_image(work: Path) -> None:
    """addon/ built on this image as the Supervisor builds it (BUILD_FROM), and its start
    (run.sh -> listener.addon --check) against a stand-in Supervisor on this host."""
    step(f"Home Assistant add-on image -> {ADDON_IMAGE}")
    t0 = time.monotonic()
    proc = podman("build", "--format=docker", "--network=host", "--pull=never", "--layers",
                  "--build-arg", f"BUILD_FROM={IMAGE}", "-t", ADDON_IMAGE, str(ROOT / "addon"),
                  timeout=900, check=False)
    if proc.returncode != 0:
        fail(f"add-on build exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr}")
    ok(f"built in {time.monotonic() - t0:.0f} s; adds "
       f"{(image_size(ADDON_IMAGE) - image_size(IMAGE)) / 1e6:.1f} MB to the listener image")
    import yaml

    data = work / "addon-data"
    data.mkdir()
    options = yaml.safe_load((ROOT / "addon" / "config.yaml").read_text())["options"]
    supervisor = Supervisor("127.0.0.1", free_port())
    try:
        def start(opts: dict) -> subprocess.CompletedProcess[str]:
            (data / "options.json").write_text(json.dumps(opts))
            return podman("run", "--rm", "--network=host", "-e", f"SUPERVISOR_TOKEN={TOKEN}",
                          "-e", f"SUPERVISOR_URL={supervisor.url}", "-v", f"{data}:/data",
                          ADDON_IMAGE, "--check", check=False, timeout=120)

        good = start(options)
        if good.returncode != 0 or not (data / "config.yaml").is_file():
            fail(f"add-on start with its default options exited {good.returncode}: "
                 f"{good.stderr}")
        ok("default options + the Supervisor's broker -> a valid /data/config.yaml")
        check = podman("run", "--rm", "-v", f"{data}:/data", "--entrypoint", "listener",
                       ADDON_IMAGE, "health", check=False)
        if check.returncode != 1 or "/data/heartbeat" not in check.stderr:
            fail(f"the add-on's health check reads the wrong config: {check.stderr}")
        ok("its HEALTHCHECK reads the add-on's config (/data/heartbeat)")
        bad = start({**options, "on_threshold": 1.7})
        if bad.returncode != 2 or "option on_threshold" not in bad.stderr \
                or "Traceback" in bad.stderr:
            fail(f"a wrong option: exit {bad.returncode}, expected 2 naming it: {bad.stderr}")
        ok("a wrong option: exit 2, " + bad.stderr.strip().splitlines()[0])
    finally:
        supervisor.close()


def make_sample(work: Path) -> None:
    audio, _ = sounds.stream([("alarm", 12.0), ("knocking", 31.0)], seconds=60.0,
                             seed=sounds.FRESH_SEED_BASE + 7, event_seconds=4.0, snr_db=20.0,
                             background_dbfs=-50.0)
    write_wav(work / "sample.wav", audio)
    # for `listener run`: long enough that only SIGTERM ends it, however slow the machine
    audio, _ = sounds.stream([("alarm", 12.0)], seconds=240.0, seed=sounds.FRESH_SEED_BASE + 8,
                             event_seconds=4.0, snr_db=20.0, background_dbfs=-50.0)
    write_wav(work / "long.wav", audio)
    (work / "scan.yaml").write_text(SCAN_CONFIG)
    (work / "first.yaml").write_text(FIRST_START_CONFIG)
    for p in (work, *work.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)  # readable by the image's user
