"""`listener model ...` and `listener embed` as a user runs them: real subprocesses.

User mistakes must exit 2 with a message naming the path and no traceback.
`model pull` runs against a local HTTP server that speaks the hub's resolve
protocol (HF_ENDPOINT), and against endpoints that refuse or never answer.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from listener.audio.decode import write_wav
from listener.export.pull import DEFAULT_FILES, EXACT_TEXT_FILE
from listener.model.modeldir import ModelDir, recommended_settings
from listener.model.text_tower import TextTower
from tests.helpers import assert_clean_error, assert_no_traceback, copy_dir, free_port, run_cli


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    """A 25-s file: tone, then noise, then clicks (different content per 10-s window)."""
    sr = 48000
    t = np.arange(25 * sr) / sr
    x = 0.3 * np.sin(2 * np.pi * 440 * t)
    x[10 * sr : 20 * sr] = np.random.default_rng(0).normal(0, 0.2, 10 * sr)
    x[20 * sr :: sr // 8] = 0.9
    p = tmp_path_factory.mktemp("audio") / "clip.wav"
    write_wav(p, x.astype(np.float32))
    return p


# ---- clear errors -----------------------------------------------------------------


def test_non_directory(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"not a directory")
    assert_clean_error(run_cli("embed", "--model", f, "--text", "hi"), str(f), "not a directory")


def test_missing_file_says_how_to_get_a_model(tiny_model_dir, tmp_path, wav):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    (d / "onnx" / "audio_model_quantized.onnx").unlink()
    res = run_cli("embed", "--model", d, "--audio", wav)
    assert_clean_error(
        res,
        str(d / "onnx" / "audio_model_quantized.onnx"),
        "listener model pull",
        "listener model export",
    )


def test_truncated_onnx(tiny_model_dir, tmp_path, wav):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    p = d / "onnx" / "audio_model_quantized.onnx"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert_clean_error(run_cli("embed", "--model", d, "--audio", wav), str(p), "truncated")


def test_wrong_input_shape(tiny_model_dir, tmp_path, wav):
    """A preprocessor config that does not fit the model (32 mel bins) -> features rejected."""
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((d / "preprocessor_config.json").read_text())
    cfg["feature_size"] = 32
    (d / "preprocessor_config.json").write_text(json.dumps(cfg))
    res = run_cli("embed", "--model", d, "--audio", wav)
    assert_clean_error(res, str(d / "onnx" / "audio_model_quantized.onnx"), "[1, 1, 1001, 32]")


def test_hash_mismatch_in_verify(tiny_model_dir, tmp_path):
    d = copy_dir(tiny_model_dir, tmp_path / "m")
    with open(d / "config.json", "a") as f:
        f.write("\n")
    res = run_cli("model", "verify", d)
    assert_clean_error(res, str(d / "config.json"), "does not match its sha256")


def test_export_bad_checkpoint(tmp_path):
    res = run_cli("model", "export", "--checkpoint", tmp_path / "nope", "--out", tmp_path / "out")
    assert_clean_error(res, "cannot load CLAP checkpoint", str(tmp_path / "nope"))
    assert not (tmp_path / "out").exists()


def test_audio_file_without_samples_exits_2_naming_it(tiny_model_dir, tmp_path):
    """A WAV header without data (and a 0-byte file) is a user mistake, not a traceback."""
    import soundfile as sf

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 48000)
    zero = tmp_path / "zero.flac"
    zero.write_bytes(b"")
    for f in (empty, zero):
        assert_clean_error(run_cli("embed", "--model", tiny_model_dir, "--audio", f),
                           f"{f} has no audio samples", alone=True)
    assert_clean_error(run_cli("model", "verify", tiny_model_dir, "--audio", empty,
                               "--threads", "1"),
                       f"{empty} has no audio samples")


# ---- verify / info / embed --------------------------------------------------------


def test_verify_reports_raw_and_centred_cosine(tiny_model_dir, wav):
    res = run_cli("model", "verify", tiny_model_dir, "--json", "--threads", "1")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["n"] == 10 and r["inputs"] == "10 generated signals"
    assert 0.999 < r["audio_cosine_raw_min"] <= r["audio_cosine_raw_mean"] <= 1.0 + 1e-6
    assert 0.9 < r["audio_cosine_centred_min"] <= r["audio_cosine_centred_mean"] <= 1.0 + 1e-6
    # the centred cosine is the more sensitive one
    assert r["audio_cosine_centred_min"] < r["audio_cosine_raw_min"]
    assert 0.0 <= r["top1_agreement"] <= 1.0 and len(r["prompts"]) >= 4
    # the text side is measured too, and prompts use the most accurate text tower
    assert 0.0 < r["text_cosine_centred_min"] <= r["text_cosine_centred_mean"] <= 1.0 + 1e-6
    assert r["text_cosine_centred_min"] <= r["text_cosine_raw_min"] <= 1.0 + 1e-6
    assert r["text_precision"] == "fp32"
    assert len(r["hashes_checked"]) == 7
    res = run_cli("model", "verify", tiny_model_dir, "--audio", wav, "--threads", "1")
    assert res.returncode == 0, res.stderr
    assert "1 files + 10 generated signals" in res.stdout
    assert "raw: min" in res.stdout and "centred" in res.stdout and "clip.wav" in res.stdout
    assert "text embedding cosine over" in res.stdout
    assert "prompts are embedded with the fp32 text tower" in res.stdout


def test_info(tiny_model_dir):
    res = run_cli("model", "info", tiny_model_dir, "--hashes", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["embedding_dim"] == 32 and len(info["hashes_checked"]) == 7
    assert "onnx/audio_model_quantized.onnx" in info["files"]


def test_info_and_verify_with_a_relative_model_dir(tiny_model_dir, tmp_path):
    """The directory as the user typed it, relative to the cwd: each file is found once."""
    copy_dir(tiny_model_dir, tmp_path / "good")
    res = run_cli("model", "info", "good", "--hashes", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["hashes_checked"]) == 7
    res = run_cli("model", "verify", "good", "--json", "--threads", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(json.loads(res.stdout)["hashes_checked"]) == 7
    with open(tmp_path / "good" / "tokenizer.json", "a") as f:
        f.write(" ")
    res = run_cli("model", "info", "good", "--hashes", cwd=tmp_path)
    assert_clean_error(res, "model file good/tokenizer.json does not match its sha256")


def test_embed_text(tiny_model_dir):
    texts = ["a dog barking", "rain on a window"]
    res = run_cli("embed", "--model", tiny_model_dir, "--text", *texts, "--jsonl")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["input"] for o in lines] == texts
    got = np.array([o["embedding"] for o in lines])
    assert got.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    want = TextTower(ModelDir(tiny_model_dir), "int8", threads=1).embed(texts)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_embed_audio_newest_window_and_all_windows(tiny_model_dir, wav):
    res = run_cli("embed", "--model", tiny_model_dir, "--audio", wav, "--precision", "fp32")
    assert res.returncode == 0, res.stderr
    (one,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert one["input"] == str(wav) and len(one["embedding"]) == 32
    res = run_cli(
        "embed", "--model", tiny_model_dir, "--audio", wav, "--precision", "fp32", "--all-windows"
    )
    assert res.returncode == 0, res.stderr
    wins = [json.loads(line) for line in res.stdout.splitlines()]
    assert [w["start_s"] for w in wins] == [0.0, 10.0, 15.0]
    # without --all-windows the embedding is the newest 10 s = the last window
    np.testing.assert_allclose(wins[-1]["embedding"], one["embedding"], atol=1e-6)
    e = np.array([w["embedding"] for w in wins])
    assert (e @ e.T)[0, 1] < 0.99999  # different content, different embeddings


# ---- pull ---------------------------------------------------------------------------


def _hub_env(port: int, tmp_path: Path) -> dict[str, str]:
    """Environment for a pull from the hub at 127.0.0.1:``port``, with its own HF cache."""
    return {"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}


def cli_pull(dest: Path, port: int, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`listener model pull --dir dest` (default repo) from the hub at 127.0.0.1:``port``."""
    return run_cli("model", "pull", "--dir", dest, env=_hub_env(port, tmp_path))


def test_pull_offline_fails_fast_naming_both_ways(tmp_path):
    port = free_port()  # nothing listens there: connection refused, like no network
    t0 = time.monotonic()
    res = cli_pull(tmp_path / "m", port, tmp_path)
    assert time.monotonic() - t0 < 15
    assert_clean_error(
        res,
        "listener model pull",
        "listener model export --checkpoint",
        "Xenova/clap-htsat-unfused",
    )


def test_pull_from_silent_hub_is_bounded(tmp_path):
    """A hub that accepts the connection but never answers: fails within the timeouts."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    try:
        t0 = time.monotonic()
        res = cli_pull(tmp_path / "m", srv.getsockname()[1], tmp_path)
        assert time.monotonic() - t0 < 30
    finally:
        srv.close()
    assert_clean_error(res, "download of", "listener model export --checkpoint")


COMMIT = "a" * 40


class _FakeHub(http.server.ThreadingHTTPServer):
    """Serves ``files`` at /<repo>/resolve/<rev>/<path> like huggingface.co does."""

    daemon_threads = True

    def __init__(self, repo: str, files: dict[str, bytes], etags: dict[str, str]):
        self.repo, self.files, self.etags = repo, files, etags
        self.requests: list[str] = []
        self.cut_after: dict[str, int] = {}
        super().__init__(("127.0.0.1", 0), _HubHandler)


class _HubHandler(http.server.BaseHTTPRequestHandler):
    server: _FakeHub

    def log_message(self, *args) -> None:
        pass

    def _find(self) -> tuple[str, bytes] | None:
        path = self.path.split("?")[0]
        for rev in ("main", COMMIT):  # like the hub: a branch or a commit id
            prefix = f"/{self.server.repo}/resolve/{rev}/"
            if path.startswith(prefix) and path[len(prefix) :] in self.server.files:
                name = path[len(prefix) :]
                return name, self.server.files[name]
        return None

    def _reply(self, body: bool) -> None:
        self.server.requests.append(f"{self.command} {self.path} range={self.headers.get('Range')}")
        found = self._find()
        if found is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        name, data = found
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{self.server.etags[name]}"')
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if body:
            cut = self.server.cut_after.pop(name, None)
            if cut is not None:
                self.wfile.write(data[start:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])

    def do_HEAD(self) -> None:
        self._reply(body=False)

    def do_GET(self) -> None:
        self._reply(body=True)


@pytest.fixture
def fake_hub(tiny_model_dir) -> Iterator[_FakeHub]:
    files = {name: (tiny_model_dir / name).read_bytes()
             for name in (*DEFAULT_FILES, EXACT_TEXT_FILE)}
    # LFS files have the sha256 as ETag; small git files a git blob id (not checkable)
    etags = {
        n: hashlib.sha256(b).hexdigest() if n.endswith(".onnx") else hashlib.sha1(b).hexdigest()
        for n, b in files.items()
    }
    hub = _FakeHub("Xenova/clap-htsat-unfused", files, etags)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    try:
        yield hub
    finally:
        hub.shutdown()
        hub.server_close()


def test_pull_from_hub_writes_a_loadable_verified_directory(fake_hub, tmp_path, wav):
    dest = tmp_path / "pulled"
    res = cli_pull(dest, fake_hub.server_address[1], tmp_path)
    assert res.returncode == 0, res.stderr
    for name in DEFAULT_FILES:
        assert (dest / name).read_bytes() == fake_hub.files[name]
    model = ModelDir(dest)
    m = model.manifest
    assert m["source_checkpoint"] == "Xenova/clap-htsat-unfused" and m["commit"] == "a" * 40
    assert m["hub_files"]["onnx/audio_model_quantized.onnx"]["sha256_checked"] is True
    assert sorted(model.verify_hashes()) == sorted(DEFAULT_FILES)
    # a pulled CLAP gets the thresholds documented for CLAP, which a config may override
    assert recommended_settings(dest) == {"on_threshold": 0.30, "off_threshold": 0.25,
                                          "margin": 0.05}
    res = run_cli("embed", "--model", dest, "--audio", wav)
    assert res.returncode == 0, res.stderr


def test_pull_exact_text_fetches_the_fp32_text_tower_and_says_its_size(fake_hub, tmp_path):
    dest = tmp_path / "pulled"
    port = fake_hub.server_address[1]
    res = run_cli("model", "pull", "--dir", dest, "--exact-text", env=_hub_env(port, tmp_path))
    assert res.returncode == 0, res.stderr
    data = fake_hub.files[EXACT_TEXT_FILE]
    assert (dest / EXACT_TEXT_FILE).read_bytes() == data
    assert f"{EXACT_TEXT_FILE}: {len(data) / 1e6:.1f} MB" in res.stderr
    assert ModelDir(dest).best_text_precision() == "fp32"
    assert sorted(ModelDir(dest).verify_hashes()) == sorted((*DEFAULT_FILES, EXACT_TEXT_FILE))


def test_pull_rejects_a_file_whose_sha256_differs(fake_hub, tmp_path):
    fake_hub.etags["onnx/text_model_quantized.onnx"] = "0" * 64
    dest = tmp_path / "pulled"
    res = cli_pull(dest, fake_hub.server_address[1], tmp_path)
    assert_clean_error(res, str(dest / "onnx" / "text_model_quantized.onnx"), "0" * 64)
    assert not (dest / "onnx" / "text_model_quantized.onnx").exists()
    assert not (dest / "listener.json").exists()


def test_export_cli_no_quantize(tiny_checkpoint, tmp_path):
    out = tmp_path / "fp32only"
    res = run_cli("model", "export", "--checkpoint", tiny_checkpoint, "--out", out, "--no-quantize")
    assert res.returncode == 0, res.stderr
    assert "fp32 check vs PyTorch" in res.stderr
    assert_no_traceback(res.stderr)
    model = ModelDir(out)
    assert model.has("audio", "fp32") and not model.has("audio", "int8")
    assert model.manifest["quantization"] is None
    res = run_cli("embed", "--model", out, "--text", "rain")
    assert_clean_error(res, str(out / "onnx" / "text_model_quantized.onnx"), "fp32")


def test_default_pull_manifest_matches_code():
    data = json.loads(
        (Path(__file__).parents[1] / "models" / "clap-htsat-unfused.json").read_text()
    )
    from listener.export.pull import DEFAULT_REPO

    assert data["repo_id"] == DEFAULT_REPO
    assert tuple(data["files"]) == DEFAULT_FILES


def test_pull_resumes_an_interrupted_download(fake_hub, tmp_path):
    name = "onnx/audio_model_quantized.onnx"
    data = fake_hub.files[name]
    half = len(data) // 2
    fake_hub.cut_after[name] = half  # the first GET dies after half the bytes
    dest = tmp_path / "pulled"
    port = fake_hub.server_address[1]
    res = cli_pull(dest, port, tmp_path)
    assert_clean_error(res, "audio_model_quantized.onnx", "again to resume")
    assert not (dest / name).exists()
    res = cli_pull(dest, port, tmp_path)
    assert res.returncode == 0, res.stderr
    assert (dest / name).read_bytes() == data
    gets = [r.split(" ", 2)[2] for r in fake_hub.requests if r.startswith("GET") and name in r]
    assert gets == ["range=None", f"range=bytes={half}-"]
    # one snapshot: each run asks for "main" once, then uses the commit it names
    assert sum("/resolve/main/" in r for r in fake_hub.requests) == 2
    assert not (dest / ".partial").exists()
    assert sorted(ModelDir(dest).verify_hashes()) == sorted(DEFAULT_FILES)
    # pulling again downloads nothing
    n = len(fake_hub.requests)
    assert cli_pull(dest, port, tmp_path).returncode == 0
    assert not any(r.startswith("GET") for r in fake_hub.requests[n:])
