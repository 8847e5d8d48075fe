"""Download a published ONNX export of CLAP (default Xenova/clap-htsat-unfused).

huggingface_hub gives the file metadata (ETag, size, commit), auth headers and
error types (honours HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE); the bodies are
fetched with HTTP Range requests into ``DIR/.partial`` so an interrupted pull
resumes where it stopped (huggingface_hub 2.x discards partial files). All files
come from the commit of the first one. Before anything else the hub is probed with a short,
thread-bounded connect, so on a machine without internet the command fails in
seconds, naming both ways to get a model, instead of retrying for minutes.
After download every file's sha256 is computed, compared with the hub's ETag
when that is a sha256 (LFS files), and recorded in listener.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from listener.detect.settings import CLAP_RECOMMENDED
from listener.errors import ModelError
from listener.model.modeldir import ModelDir, sha256_file, write_manifest

DEFAULT_REPO = "Xenova/clap-htsat-unfused"
DEFAULT_FILES = (
    "onnx/audio_model_quantized.onnx",
    "onnx/text_model_quantized.onnx",
    "tokenizer.json",
    "preprocessor_config.json",
    "config.json",
)
#: the fp32 text tower (`model pull --exact-text`): prompts embedded with it match the
#: checkpoint (int8 RoBERTa moved them: benchmarks/README.md, issue 18); about 500 MB for
#: clap-htsat-unfused against 125 MB for the int8 one, read once per new prompt only
EXACT_TEXT_FILE = "onnx/text_model.onnx"
TIMEOUT_S = 5.0
# network libraries huggingface_hub may surface errors from (httpx2 in huggingface_hub 2.x)
_NET_MODULES = ("httpx", "httpcore", "h11", "requests", "urllib3")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _offline_message(repo_id: str, why: str) -> str:
    return (
        f"cannot download {repo_id} from {endpoint()}: {why}. Two ways to get a model: "
        f"(1) on a machine with internet run `listener model pull {repo_id} --dir DIR` "
        "(then copy DIR here); (2) export a local CLAP checkpoint with "
        "`listener model export --checkpoint CHECKPOINT_DIR --out DIR` "
        "(needs pip install 'listener[export]')"
    )


def probe(url: str, timeout: float = TIMEOUT_S) -> str | None:
    """None if a TCP connection to ``url``'s host can be opened within ``timeout``, else why not.

    DNS lookups have no timeout of their own, so the attempt runs in a daemon thread.
    """
    u = urlparse(url)
    host = u.hostname or ""
    port = u.port or (443 if u.scheme == "https" else 80)
    result: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as exc:
            result.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    if not result:
        return f"no answer from {host}:{port} within {timeout:.0f} s"
    return result[0]


def _already_there(local: Path, etag: str, size: int | None) -> bool:
    """A complete earlier download of the same file (a repeated pull costs no traffic)."""
    if not local.is_file() or (size is not None and local.stat().st_size != size):
        return False
    if _SHA256.match(etag):
        return sha256_file(local) == etag
    return size is not None


def _fetch(
    url: str,
    local: Path,
    partial_dir: Path,
    etag: str,
    size: int | None,
    timeout: float,
    repo: str,
) -> None:
    """GET ``url`` into ``local``, resuming a partial file left by an interrupted pull.

    huggingface_hub 2.x deletes its partial files when a download fails, so a pull that
    dies halfway through a 130 MB file on a Pi would start again from zero. We keep the
    partial file in ``partial_dir`` (DIR/.partial, named by the ETag, so a changed file on the hub
    never resumes stale bytes) and ask for the rest with an HTTP Range request.
    """
    import http.client
    import urllib.error
    import urllib.request

    from huggingface_hub.utils import build_hf_headers

    key = hashlib.sha256(f"{local.name}|{etag}".encode()).hexdigest()[:16]
    part = partial_dir / f"{key}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    headers = dict(build_hf_headers())
    headers["Accept-Encoding"] = "identity"
    if start:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            mode = "ab" if start and resp.status == 206 else "wb"
            with open(part, mode) as f:
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    f.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        got = part.stat().st_size if part.exists() else 0
        raise ModelError(
            f"download of {local.name} from {repo} stopped after {got / 1e6:.1f} MB ({exc}); "
            "run the same `listener model pull` again to resume"
        ) from None
    if size is not None and part.stat().st_size != size:
        got = part.stat().st_size
        raise ModelError(
            f"download of {local.name} from {repo} is incomplete ({got} of {size} bytes); "
            "run the same `listener model pull` again to resume"
        )
    local.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, local)


def _check_reachable(repo_id: str, ep: str, timeout: float) -> None:
    """Fail within seconds, naming both ways to get a model, when the hub cannot answer."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ModelError(_offline_message(repo_id, "HF_HUB_OFFLINE is set"))
    why = probe(ep, timeout)
    if why:
        raise ModelError(_offline_message(repo_id, f"the hub is unreachable ({why})"))


def _metadata(url: str, repo_id: str, revision: str, name: str, ep: str, timeout: float) -> Any:
    """huggingface_hub's metadata (commit, ETag, size) of one file; hub errors -> ModelError."""
    import huggingface_hub as hf
    from huggingface_hub import errors as hf_errors

    try:
        return hf.get_hf_file_metadata(url, timeout=timeout, endpoint=ep)
    except hf_errors.RepositoryNotFoundError:
        raise ModelError(
            f"repository {repo_id} was not found on {ep} (or needs a login: set HF_TOKEN)"
        ) from None
    except (hf_errors.EntryNotFoundError, hf_errors.RevisionNotFoundError):
        raise ModelError(
            f"{repo_id}@{revision} has no file {name}; is it a CLAP ONNX export "
            "(onnx/audio_model_quantized.onnx, tokenizer.json, ...)?"
        ) from None
    except (hf_errors.HfHubHTTPError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            _offline_message(repo_id, f"download of {name} failed ({first})")
        ) from None
    except Exception as exc:  # httpx transport errors etc.
        if not type(exc).__module__.startswith(_NET_MODULES):
            raise
        raise ModelError(
            _offline_message(repo_id, f"download of {name} failed ({type(exc).__name__}: {exc})")
        ) from None


def _download_checked(url: str, local: Path, dest: Path, etag: str, size: int | None,
                      timeout: float, repo_id: str) -> str:
    """``local`` downloaded (unless already there) and its sha256, checked against the
    ETag when that is one; a mismatching file is deleted."""
    if not _already_there(local, etag, size):
        _fetch(url, local, dest / ".partial", etag, size, timeout, repo_id)
    digest = sha256_file(local)
    if _SHA256.match(etag) and etag != digest:
        local.unlink(missing_ok=True)
        raise ModelError(
            f"downloaded {local} has sha256 {digest} but the hub says {etag}; "
            "the file was deleted: run `listener model pull` again"
        )
    return digest


def _pull_manifest(dest: Path, repo_id: str, ep: str, revision: str, commit: str | None,
                   record: dict[str, Any]) -> dict[str, Any]:
    """listener.json of a pulled directory: where it came from, what the hub said per file,
    and the model facts a runtime may want without reading config.json."""
    manifest: dict[str, Any] = {
        "source_checkpoint": repo_id,
        "source": f"{ep}/{repo_id}",
        "revision": revision,
        "commit": commit,
        "exporter_version": None,
        "downloaded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hub_files": record,
        # the thresholds that suit CLAP's scores (the config's own values still win)
        "recommended": dict(CLAP_RECOMMENDED),
    }
    view = ModelDir(dest) if (dest / "config.json").is_file() else None
    if view is not None:
        manifest["embedding_dim"] = view.embedding_dim
        manifest["truncation"] = view.truncation
        manifest["text_max_length"] = view.max_text_length
    return manifest


def pull(
    repo_id: str = DEFAULT_REPO,
    dest: str | Path | None = None,
    files: tuple[str, ...] = DEFAULT_FILES,
    revision: str = "main",
    timeout: float = TIMEOUT_S,
    log: Callable[[str], None] = print,
) -> Path:
    """Download ``files`` of ``repo_id`` into ``dest``; returns the (validated) directory."""
    import huggingface_hub as hf

    dest = Path(dest or Path("models") / repo_id.split("/")[-1]).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ModelError(f"--dir {dest} exists and is not a directory")
    ep = endpoint()
    _check_reachable(repo_id, ep, timeout)
    dest.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {}
    commit = None
    t0 = time.perf_counter()
    for name in files:
        # after the first file, pin the commit so all files come from one snapshot
        url = hf.hf_hub_url(repo_id, name, revision=commit or revision, endpoint=ep)
        meta = _metadata(url, repo_id, revision, name, ep, timeout)
        commit = commit or meta.commit_hash
        if commit:
            url = hf.hf_hub_url(repo_id, name, revision=commit, endpoint=ep)
        etag = (meta.etag or "").strip('"').lower()
        local = dest / name
        if meta.size is not None:
            log(f"{name}: {meta.size / 1e6:.1f} MB")
        digest = _download_checked(url, local, dest, etag, meta.size, timeout, repo_id)
        record[name] = {
            "etag": etag or None,
            "size": meta.size,
            "sha256_checked": bool(_SHA256.match(etag)),
        }
        log(f"{name}: {local.stat().st_size} bytes, sha256 {digest[:16]}...")
    manifest = _pull_manifest(dest, repo_id, ep, revision, commit, record)
    with contextlib.suppress(OSError):
        (dest / ".partial").rmdir()  # only when empty
    write_manifest(dest, manifest)
    log(f"pulled {repo_id} into {dest} in {time.perf_counter() - t0:.1f} s")
    return dest
