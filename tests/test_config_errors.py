"""Config mistakes give exit 2 and one line per problem: file:line key.path: what is expected.

The corpus in tests/configs/broken/ holds one mistake per file; its first line says
what the error must contain (``# expect: LINE KEYPATH :: FRAGMENT``). Each file is
checked through the real CLI in a subprocess, from a scratch directory that has a
model dir, an example file and a directory where a file is expected (root can read
any file, so "unreadable" is a directory in the place of a file).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pydantic import BaseModel
from ruamel.yaml import YAML

from listener.config.loader import load_config, parse_config
from listener.config.schema import Config, TriggerConfig
from listener.errors import ConfigError
from tests.helpers import assert_clean_error, run_cli, run_main

ROOT = Path(__file__).resolve().parent.parent
BROKEN = sorted((Path(__file__).parent / "configs" / "broken").glob("*.yaml"))
EXAMPLE = ROOT / "config.example.yaml"
EXPECT = re.compile(r"^# expect: (\d+) (\S+(?: level\))?) :: (.+)$")

GOOD = """\
model:
  dir: model
triggers:
  - name: alarm
    prompts: [an alarm beeping]
mqtt:
  username: me
  password: hunter2-secret
"""


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "models" / "clap-htsat-unfused").mkdir(parents=True)
    (tmp_path / "model").mkdir()
    (tmp_path / "ok.wav").write_bytes(b"RIFF")
    (tmp_path / "a_directory.wav").mkdir()
    return tmp_path


def test_corpus_is_big_enough():
    assert len(BROKEN) >= 20


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_config_exits_2_with_line_and_key_path(path: Path, scratch: Path, capsys):
    m = EXPECT.match(path.read_text().splitlines()[0] if path.read_text() else "")
    assert m, f"{path.name}: first line must be '# expect: LINE KEYPATH :: FRAGMENT'"
    line, keypath, fragment = m.groups()
    config = scratch / "config.yaml"
    shutil.copy(path, config)
    # in-process through the real CLI entry point (a subprocess per file costs ~0.5 s;
    # the subprocess path is covered by the tests below)
    r = run_main(capsys, "check-config", "--config", config)
    assert_clean_error(r)
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{config}:{line} {keypath}: "), r.stderr
    assert fragment in first, r.stderr
    assert r.stdout == ""


def test_every_problem_is_reported_one_per_line(scratch: Path):
    (scratch / "config.yaml").write_text(
        "audio:\n  hop_seconds: fast\n"
        "triggers:\n  - name: a b\n    prompts: [x]\n    on_threshold: 2\n"
        "mqtt:\n  hots: x\n  port: 0\n"
    )
    r = run_cli("check-config", "--config", "config.yaml", cwd=scratch)
    assert_clean_error(r)
    lines = r.stderr.splitlines()
    for expected in (
        "config.yaml:2 audio.hop_seconds: must be a number",
        "config.yaml:4 triggers[0].name: may only contain",
        "config.yaml:6 triggers[0].on_threshold: must be between 0 and 1, got 2",
        "config.yaml:8 mqtt.hots: unknown key; did you mean 'host'?",
        "config.yaml:9 mqtt.port: must be greater than or equal to 1",
    ):
        assert any(ln.startswith(expected) for ln in lines), (expected, r.stderr)
    assert "5 problems" in lines[-1]


def test_valid_config_prints_resolved_config_with_secrets_masked(scratch: Path):
    (scratch / "config.yaml").write_text(GOOD)
    r = run_cli("check-config", "--config", "config.yaml", cwd=scratch)
    assert r.returncode == 0, r.stderr
    assert "hunter2-secret" not in r.stdout
    assert "password: '********'" in r.stdout or 'password: "********"' in r.stdout
    dumped = YAML(typ="safe").load(r.stdout)
    assert dumped["model"]["dir"] == str(scratch / "model")  # relative to the file
    assert dumped["defaults"]["on_threshold"] == 0.3  # defaults filled in
    assert dumped["triggers"][0]["name"] == "alarm"


def test_search_order_env_then_cwd(scratch: Path, tmp_path_factory):
    (scratch / "config.yaml").write_text(GOOD)
    other = tmp_path_factory.mktemp("other")
    (other / "model").mkdir()
    (other / "custom.yaml").write_text(GOOD.replace("alarm", "from_env"))
    # $LISTENER_CONFIG wins over ./config.yaml
    r = run_cli("check-config", cwd=scratch, env={"LISTENER_CONFIG": str(other / "custom.yaml")})
    assert r.returncode == 0 and "from_env" in r.stdout, r.stderr
    # --config wins over $LISTENER_CONFIG
    r = run_cli(
        "check-config",
        "--config",
        "config.yaml",
        cwd=scratch,
        env={"LISTENER_CONFIG": str(other / "custom.yaml")},
    )
    assert r.returncode == 0 and "name: alarm" in r.stdout
    # no flag, no env: ./config.yaml (when /etc/listener/config.yaml does not exist)
    if not Path("/etc/listener/config.yaml").exists():
        r = run_cli("check-config", cwd=scratch, env={"LISTENER_CONFIG": ""})
        assert r.returncode == 0 and "name: alarm" in r.stdout, r.stderr


def test_missing_config_file_and_directory_give_exit_2(scratch: Path):
    r = run_cli("check-config", "--config", "nope.yaml", cwd=scratch)
    assert_clean_error(r, "nope.yaml does not exist")
    r = run_cli("check-config", "--config", "models", cwd=scratch)
    assert_clean_error(r, "is a directory")


def test_no_config_anywhere_says_where_it_looked(tmp_path: Path):
    if Path("/etc/listener/config.yaml").exists():  # pragma: no cover - dev machine
        return
    r = run_cli("check-config", cwd=tmp_path, env={"LISTENER_CONFIG": ""})
    assert_clean_error(r, "--config", "LISTENER_CONFIG")


def test_run_with_a_broken_config_exits_2_without_traceback(scratch: Path):
    shutil.copy(BROKEN[0], scratch / "config.yaml")
    r = run_cli("run", "--config", "config.yaml", cwd=scratch)
    assert_clean_error(r, "config.yaml:")


def test_run_without_triggers_exits_2(scratch: Path):
    (scratch / "config.yaml").write_text("model:\n  dir: model\nmqtt:\n  enabled: false\n")
    r = run_cli("run", "--config", "config.yaml", cwd=scratch)
    assert_clean_error(r, "no triggers configured")


def test_empty_sections_mean_defaults():
    cfg = parse_config(
        "model:\nmqtt:\n  tls:\ntriggers:\n  - {name: a, prompts: [x]}\n", check_files=False
    ).config
    assert cfg.mqtt.tls.enabled is False and cfg.model.precision == "int8"


def test_duplicate_trigger_points_at_the_duplicate():
    with pytest.raises(ConfigError) as info:
        parse_config(
            "triggers:\n  - {name: a, prompts: [x]}\n  - {name: b, prompts: [x]}\n"
            "  - {name: a, prompts: [y]}\n",
            check_files=False,
        )
    assert info.value.errors == [
        "config.yaml:4 triggers[2].name: duplicate trigger name 'a' (already used by "
        "triggers[0]): names must be unique"
    ]


# --- config.example.yaml ---------------------------------------------------------------


def test_example_config_is_valid():
    loaded = load_config(EXAMPLE, check_model=False)
    cfg = loaded.config
    assert cfg.model.dir == ROOT / "models" / "clap-htsat-unfused"
    assert len(cfg.triggers) >= 2
    # the only thing it may lack in a fresh clone is the model (script/run pulls it)
    try:
        load_config(EXAMPLE)
    except ConfigError as exc:
        assert all("model.dir" in e for e in exc.errors), exc.errors


def _schema_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        sub = None
        for c in (ann, *getattr(ann, "__args__", ())):
            if isinstance(c, type) and issubclass(c, BaseModel):
                sub = c
        if name == "triggers" and not prefix:
            sub = TriggerConfig
        if name in ("triggers", "streams") and not prefix:
            path += "[0]"
        if path == "streams[0].source":
            sub = None  # the same keys as the top-level source, documented there
        out.append(path)
        if sub is not None:
            out += _schema_paths(sub, path + ".")
    return out


def _uncommented_example() -> object:
    """The example with every '# key: value' line switched on."""
    text = EXAMPLE.read_text()
    on = re.sub(r"(?m)^(\s*)# ((?:- )?[a-z_]+:(?: .*)?)$", r"\1\2", text)
    return YAML(typ="safe").load(on)


def test_example_config_documents_every_key():
    doc = _uncommented_example()
    missing = []
    for path in _schema_paths(Config):
        node = doc
        for part in re.findall(r"[a-z_]+|\[\d+\]", path):
            if part.startswith("["):
                node = node[int(part[1:-1])] if isinstance(node, list) else None
            else:
                node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
            if node is KeyError:
                missing.append(path)
                break
    assert not missing, f"config.example.yaml does not mention: {missing}"


def test_example_config_states_the_real_defaults():
    """Every '# key: value' default in the example equals the schema's default."""
    doc = _uncommented_example()
    defaults = Config().model_dump(mode="json")
    checked = 0
    for section in ("model", "audio", "defaults", "clips", "logging"):
        for key, value in doc[section].items():
            if value is not None and key in defaults[section]:
                if section == "model" and key == "dir":
                    continue
                assert defaults[section][key] == value, (section, key)
                checked += 1
    for key in ("port", "keepalive", "score_delta", "stats_interval_seconds"):
        assert doc["mqtt"][key] == defaults["mqtt"][key]
        checked += 1
    assert checked >= 20


# --- secrets: a password is never echoed -------------------------------------------------


def _with_password(scratch: Path, value: str) -> Path:
    """scratch/config.yaml: a valid config whose mqtt.password line is ``value`` as written."""
    text = GOOD.replace("password: hunter2-secret", f"password: {value}")
    (scratch / "config.yaml").write_text(text + "  enabled: false\n")
    return scratch / "config.yaml"


def test_an_unquoted_number_as_password_is_the_text_as_written(scratch: Path):
    """YAML reads 98765432 as a number and 0123 as 123; the broker needs what was typed."""
    for written in ("98765432", "0123", "1e3", "0x1F"):
        cfg = parse_config(GOOD.replace("hunter2-secret", written), base=scratch).config
        assert cfg.mqtt.password is not None
        assert cfg.mqtt.password.get_secret_value() == written
    _with_password(scratch, "98765432")
    r = run_cli("check-config", "--config", "config.yaml", cwd=scratch)
    assert r.returncode == 0, r.stderr
    assert "98765432" not in r.stdout + r.stderr


@pytest.mark.parametrize("written", ["true", "[s3cr3t-98765]", "{part: s3cr3t-98765}"],
                         ids=["bool", "list", "mapping"])
def test_a_password_of_another_type_is_refused_without_its_value(scratch: Path, written: str):
    _with_password(scratch, written)
    for command in ("check-config", "run"):
        r = run_cli(command, "--config", "config.yaml", cwd=scratch)
        assert_clean_error(r, "config.yaml:8 mqtt.password: must be text in quotes")
        for shown in ("s3cr3t", "98765", "True", "true"):
            assert shown not in r.stderr, (command, r.stderr)


# --- clips.dir -----------------------------------------------------------------------


def test_clips_dir_that_is_not_writable_is_a_problem(scratch: Path, small_fs):
    """A read-only mount (chmod would not stop root, who runs the tests)."""
    readonly = small_fs(readonly=True)
    base = GOOD + "clips:\n  enabled: true\n  dir: {}\n"
    for target in (readonly, readonly / "clips" / "kitchen"):
        (scratch / "config.yaml").write_text(base.format(target))
        r = run_cli("check-config", "--config", "config.yaml", cwd=scratch)
        assert_clean_error(r, f"config.yaml:11 clips.dir: clips directory {target} is not writable")
    # enabled, on a writable file system (created at the first clip): fine
    (scratch / "config.yaml").write_text(base.format(scratch / "clips" / "new"))
    assert run_cli("check-config", "--config", "config.yaml", cwd=scratch).returncode == 0
    # disabled: not checked
    (scratch / "config.yaml").write_text(base.format(readonly).replace("true", "false"))
    assert run_cli("check-config", "--config", "config.yaml", cwd=scratch).returncode == 0
