"""A model directory on disk: the public transformers.js/optimum layout + our manifest.

STUB: contract only, to be implemented (issue 2).

Layout::

    DIR/onnx/audio_model.onnx            input_features [B,1,1001,64] -> audio_embeds [B,D]
    DIR/onnx/audio_model_quantized.onnx  same, int8
    DIR/onnx/text_model.onnx             input_ids (+attention_mask) -> text_embeds [N,D]
    DIR/onnx/text_model_quantized.onnx
    DIR/tokenizer.json  DIR/preprocessor_config.json  DIR/config.json
    DIR/listener.json                    our manifest (optional: pulled exports lack it)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ModelDir:
    """Validated view of a model directory. Raises ModelError naming the path when broken."""

    path: Path
    config: dict[str, Any]
    preprocessor_config: dict[str, Any]
    manifest: dict[str, Any] | None

    def __init__(self, path: str | Path) -> None:
        raise NotImplementedError

    @property
    def model_id(self) -> str:
        """Source checkpoint from the manifest, else the directory name."""
        raise NotImplementedError

    def audio_model_path(self, precision: str = "int8") -> Path:
        """int8 -> onnx/audio_model_quantized.onnx, fp32 -> onnx/audio_model.onnx, fp16 -> ..._fp16."""
        raise NotImplementedError

    def text_model_path(self, precision: str = "int8") -> Path:
        raise NotImplementedError

    @property
    def tokenizer_path(self) -> Path:
        raise NotImplementedError

    def file_sha256(self, path: Path) -> str:
        """sha256 of a file in the directory (memoised by path, size and mtime)."""
        raise NotImplementedError
