"""A model directory on disk: the public transformers.js/optimum layout + our manifest.

Reading the public layout means a user can `listener model pull` a ready export
without torch; `listener model export` writes exactly the same layout, so the
runtime has one code path. Every defect a user can cause (wrong path, missing or
damaged file, stale hash) becomes a :class:`ModelError` naming the path and how
to get a working model.

Layout::

    DIR/onnx/audio_model.onnx            input_features [B,1,1001,64] -> audio_embeds [B,D]
    DIR/onnx/audio_model_quantized.onnx  same, int8
    DIR/onnx/text_model.onnx             input_ids (+attention_mask) -> text_embeds [N,D]
    DIR/onnx/text_model_quantized.onnx
    DIR/tokenizer.json  DIR/preprocessor_config.json  DIR/config.json
    DIR/listener.json                    our manifest (optional: pulled exports lack it)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from listener.detect.settings import MODEL_KEYS
from listener.errors import ModelError
from listener.files import atomic_write

MANIFEST = "listener.json"
MANIFEST_FORMAT = 1

#: precision -> file suffix inside onnx/
PRECISIONS = {"fp32": "", "int8": "_quantized", "fp16": "_fp16"}
#: text towers, most accurate first: prompts are embedded once and cached, so the cost of
#: the exact one is paid once (in a child process: listener/model/prompt_child.py), and an
#: int8 RoBERTa moved prompt vectors far more than int8 moved the audio side (issue 18)
TEXT_BY_ACCURACY = ("fp32", "fp16", "int8")

HOW_TO_GET = (
    "get a model with `listener model pull` (needs internet) or "
    "`listener model export --checkpoint DIR_OR_ID --out DIR` "
    "(needs pip install 'listener[export]')"
)

# ClapConfig defaults: transformers omits default values from a saved config.json.
_TEXT_DEFAULTS = {"max_position_embeddings": 514, "pad_token_id": 1}
_DEFAULT_PROJECTION_DIM = 512

log = logging.getLogger(__name__)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


class HashMemo:
    """sha256 of model files by (path, size, mtime), kept in one JSON file between runs.

    Hashing a model (hundreds of MB) takes seconds; a start-up integrity check and the
    prompt cache's key both need the hash of files that rarely change. One memo for all
    of them (the state directory's ``model-hashes.json``) lets a warm start read one
    small file instead; a file rewritten in place gets a new mtime and is hashed again.
    Without ``path`` the memo lives for the process only. The file is private (0600)
    and only a cache: unreadable, it is rebuilt; unwritable, a warning.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries = self._read()

    def _read(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable hash memo %s (%s); it is rebuilt", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def sha256(self, path: Path) -> str:
        """The file's sha256: remembered when its size and mtime are unchanged, else read."""
        p = path.resolve()
        st = p.stat()
        entry = self._entries.get(str(p))
        if (
            isinstance(entry, dict)
            and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
            and isinstance(entry.get("sha256"), str)
        ):
            return str(entry["sha256"])
        digest = sha256_file(p)
        self._entries[str(p)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                 "sha256": digest}
        self._save()
        return digest

    def _save(self) -> None:
        if self.path is None:
            return
        merged = {**self._read(), **self._entries}  # keep what other processes added
        try:
            atomic_write(self.path, json.dumps(merged, indent=1, sort_keys=True), mode=0o600)
        except OSError as exc:
            log.warning("cannot write %s (%s); model files are hashed again next start",
                        self.path, exc)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; {HOW_TO_GET}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model file {path} is damaged ({exc}); {HOW_TO_GET}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model file {path} is not a JSON object; {HOW_TO_GET}")
    return data


class ModelDir:
    """Validated view of a model directory. Raises ModelError naming the path when broken."""

    path: Path
    config: dict[str, Any]
    preprocessor_config: dict[str, Any]
    manifest: dict[str, Any] | None

    def __init__(self, path: str | Path, hash_memo: Path | None = None) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise ModelError(f"model directory {self.path} does not exist; {HOW_TO_GET}")
        if not self.path.is_dir():
            raise ModelError(
                f"model path {self.path} is not a directory (expected a model directory with "
                f"onnx/, tokenizer.json, config.json); {HOW_TO_GET}"
            )
        self.config = _read_json(self.path / "config.json")
        self.preprocessor_config = _read_json(self.path / "preprocessor_config.json")
        mpath = self.path / MANIFEST
        self.manifest = _read_json(mpath) if mpath.exists() else None
        if not any(self._onnx(kind, p).is_file() for kind in ("audio", "text") for p in PRECISIONS):
            raise ModelError(
                f"model directory {self.path} holds no ONNX model (expected "
                f"{self.path / 'onnx' / 'audio_model_quantized.onnx'}); {HOW_TO_GET}"
            )
        self._hashes = HashMemo(hash_memo)

    # ---- identity and metadata -------------------------------------------------------

    @property
    def model_id(self) -> str:
        """Source checkpoint from the manifest, else the directory name."""
        if self.manifest and self.manifest.get("source_checkpoint"):
            return str(self.manifest["source_checkpoint"])
        return self.path.resolve().name

    @property
    def text_config(self) -> dict[str, Any]:
        return dict(self.config.get("text_config") or {})

    @property
    def embedding_dim(self) -> int:
        if self.manifest and self.manifest.get("embedding_dim"):
            return int(self.manifest["embedding_dim"])
        return int(self.config.get("projection_dim", _DEFAULT_PROJECTION_DIM))

    @property
    def pad_token_id(self) -> int:
        return int(self.text_config.get("pad_token_id", _TEXT_DEFAULTS["pad_token_id"]))

    @property
    def max_text_length(self) -> int:
        """Longest token sequence the text tower accepts (RoBERTa: positions - pad_id - 1)."""
        if self.manifest and self.manifest.get("text_max_length"):
            return int(self.manifest["text_max_length"])
        positions = int(
            self.text_config.get(
                "max_position_embeddings", _TEXT_DEFAULTS["max_position_embeddings"]
            )
        )
        return positions - self.pad_token_id - 1

    @property
    def truncation(self) -> str:
        return str(self.preprocessor_config.get("truncation", "rand_trunc"))

    @property
    def logit_scale(self) -> float | None:
        if self.manifest and self.manifest.get("logit_scale") is not None:
            return float(self.manifest["logit_scale"])
        return None

    # ---- files -----------------------------------------------------------------------

    def _onnx(self, kind: str, precision: str) -> Path:
        return self.path / "onnx" / f"{kind}_model{PRECISIONS[precision]}.onnx"

    def _model_path(self, kind: str, precision: str) -> Path:
        if precision not in PRECISIONS:
            raise ModelError(
                f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        p = self._onnx(kind, precision)
        if not p.is_file():
            have = [q for q in PRECISIONS if self._onnx(kind, q).is_file()]
            alt = f" (this directory has {kind} precision: {', '.join(have)})" if have else ""
            raise ModelError(f"model file {p} is missing{alt}; {HOW_TO_GET}")
        return p

    def audio_model_path(self, precision: str = "int8") -> Path:
        """int8 -> onnx/audio_model_quantized.onnx, fp32 -> onnx/audio_model.onnx, fp16 -> _fp16."""
        return self._model_path("audio", precision)

    def text_model_path(self, precision: str = "int8") -> Path:
        return self._model_path("text", precision)

    def has(self, kind: str, precision: str) -> bool:
        return self._onnx(kind, precision).is_file()

    def best_text_precision(self, fallback: str = "int8", memory: int | None = None) -> str:
        """The most accurate text tower this directory has (fp32 > fp16 > int8) that fits
        in ``memory`` bytes (a child loads it: about 1.4x the file, measured 696 MB for a
        501 MB fp32 RoBERTa; None: no limit); with none, ``fallback`` (whose absence
        :meth:`text_model_path` then reports)."""
        have = [p for p in TEXT_BY_ACCURACY if self.has("text", p)]
        fits = [p for p in have
                if memory is None or self._onnx("text", p).stat().st_size * 1.4 <= memory]
        if fits:
            return fits[0]
        return have[-1] if have else fallback  # nothing fits: the smallest there is

    @property
    def tokenizer_path(self) -> Path:
        p = self.path / "tokenizer.json"
        if not p.is_file():
            raise ModelError(f"model file {p} is missing; {HOW_TO_GET}")
        return p

    def file_sha256(self, path: Path) -> str:
        """sha256 of a model file, a path as this directory's methods give it (it already
        includes the directory), memoised by path, size and mtime."""
        try:
            return self._hashes.sha256(Path(path))
        except OSError:
            raise ModelError(f"model file {path} is missing; {HOW_TO_GET}") from None

    def files(self) -> list[Path]:
        """Every model file present (relative paths), manifest excluded."""
        out = [
            Path(n)
            for n in ("config.json", "preprocessor_config.json", "tokenizer.json")
            if (self.path / n).is_file()
        ]
        for kind in ("audio", "text"):
            for precision in PRECISIONS:
                p = self._onnx(kind, precision)
                if p.is_file():
                    out.append(p.relative_to(self.path))
        return out

    def runtime_files(self, precision: str, text_precision: str | None = None) -> list[Path]:
        """The files a process that listens loads: the JSON configs, the tokenizer (if
        present: only a prompt-cache miss reads it), the audio tower at ``precision`` and
        the text tower at ``text_precision`` (default: the same; ModelError naming an
        absent tower)."""
        out = [self.path / n for n in ("config.json", "preprocessor_config.json",
                                       "tokenizer.json")]
        return [p for p in out if p.is_file()] + [
            self.audio_model_path(precision), self.text_model_path(text_precision or precision)]

    def _listed(self) -> dict[str, Any]:
        files = (self.manifest or {}).get("files")
        return files if isinstance(files, dict) else {}

    def verify_files(self, paths: Iterable[Path], hashes: bool = True, fix: str = HOW_TO_GET
                     ) -> list[str]:
        """Compare files about to be loaded with the manifest, before any session is made.

        The size of each file the manifest lists is always compared (a stat); with
        ``hashes`` the sha256 of the ONNX files too (memoised). Returns the relative paths
        checked ([] without a manifest: a pulled export may lack one); raises ModelError
        naming the first file that differs (a sha256 mismatch ends with ``fix``: the
        caller knows how its check is switched off; a size mismatch has no such way out).
        """
        listed = self._listed()
        checked = []
        for p in paths:
            rel = Path(p).relative_to(self.path).as_posix()
            if rel not in listed:
                continue
            want_sha, want_size = _expected(listed[rel])
            size = p.stat().st_size
            if want_size is not None and size != want_size:
                raise ModelError(
                    f"model file {p} is {size} bytes but {self.path / MANIFEST} lists "
                    f"{want_size}: it is truncated or was replaced; {HOW_TO_GET}"
                )
            if hashes and p.suffix == ".onnx" and want_sha is not None:
                self._compare_sha256(p, want_sha, fix)
            checked.append(rel)
        return checked

    def _compare_sha256(self, p: Path, want: str | None, fix: str) -> None:
        got = self.file_sha256(p)
        if got != want:
            raise ModelError(
                f"model file {p} does not match its sha256 in {self.path / MANIFEST} "
                f"(expected {want}, found {got}): it is damaged or was replaced; {fix}"
            )

    def verify_hashes(self) -> list[str]:
        """Compare every file named in the manifest with its recorded sha256.

        Returns the relative paths checked; raises ModelError naming the first bad file.
        Without a manifest there is nothing to compare against: returns [].
        """
        checked = []
        for rel, entry in sorted(self._listed().items()):
            p = self.path / rel
            if not p.is_file():
                raise ModelError(
                    f"model file {p} is listed in {self.path / MANIFEST} but missing; {HOW_TO_GET}"
                )
            self._compare_sha256(p, _expected(entry)[0], HOW_TO_GET)
            checked.append(rel)
        return checked


def _expected(entry: Any) -> tuple[str | None, int | None]:
    """(sha256, size) a manifest entry records: ``{"sha256", "size"}`` or a bare sha256."""
    if isinstance(entry, dict):
        size = entry.get("size")
        return entry.get("sha256"), size if isinstance(size, int) else None
    return (entry if isinstance(entry, str) else None), None


def recommended_settings(directory: str | Path) -> dict[str, float]:
    """The trigger settings a model directory's listener.json recommends (``recommended``:
    any of on_threshold, off_threshold, margin), or {} when it has none (or no manifest).

    Why: how high a cosine score gets depends on the model, so the thresholds that suit
    one model do not suit another; the config's own values still win
    (listener/detect/settings.py). A malformed entry is a ModelError naming the file.
    """
    path = Path(directory).expanduser() / MANIFEST
    if not path.is_file():
        return {}
    raw = _read_json(path).get("recommended")
    if raw is None:
        return {}
    out: dict[str, float] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            ok = (key in MODEL_KEYS and isinstance(value, (int, float))
                  and not isinstance(value, bool) and 0.0 <= value <= 1.0)
            if not ok:
                break
            out[key] = float(value)
        else:
            if out.get("off_threshold", 0.0) <= out.get("on_threshold", 1.0):
                return out
    raise ModelError(
        f"{path}: 'recommended' must map {', '.join(MODEL_KEYS)} to numbers between 0 and 1 "
        f"with off_threshold <= on_threshold, got {raw!r}; fix or remove it"
    )


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write listener.json with a sha256 and size for every model file in ``directory``."""
    directory = Path(directory)
    files: dict[str, Any] = {}
    for rel in sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()):
        if rel == MANIFEST or rel.startswith("."):
            continue
        p = directory / rel
        files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
    data = {"format": MANIFEST_FORMAT, **manifest, "files": files}
    out = directory / MANIFEST
    atomic_write(out, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return out
