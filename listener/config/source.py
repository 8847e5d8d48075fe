"""The ``source:`` section: where one stream's audio comes from.

A microphone, a file, raw PCM on stdin, or a network stream (any URL FFmpeg opens:
RTSP cameras, HTTP/Icecast, RTMP, UDP, SRT, an RTP ``.sdp`` file). The same shape
serves today's top-level ``source:`` and each stream's ``source``; the short string
forms (``mic``, ``stdin``, ``file:PATH``, a URL) become mappings in
:func:`parse_source`. A URL is never echoed in an error (it may hold a password):
its problems are reported through :func:`at_key` messages, which do not quote it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from listener.audio.urls import SCHEMES, is_network_url, mask_url
from listener.config.types import PositiveFloat, PositiveInt, Strict, at_key, keeps_order

FORMS = "'mic', 'stdin', 'file:PATH', a stream URL (rtsp://, http://, ...) or a mapping with 'type'"


def parse_source(v: Any) -> Any:
    """The ``source`` value as a mapping: the shorthands ``mic``, ``stdin``,
    ``file:PATH`` and a URL (``rtsp://...``, ``cam.sdp``) become ``{type: ...}``, a
    mapping passes through unchanged.

    The config's ``source:`` key and ``--source`` accept the same shorthands; an
    unknown one raises ValueError with the accepted forms (never the value itself).
    """
    if isinstance(v, str):
        if v in ("mic", "stdin"):
            return {"type": v}
        if v.startswith("file:"):
            return {"type": "file", "path": v[len("file:") :]}
        if "://" in v or is_network_url(v):
            return {"type": "url", "url": v}  # an unknown scheme is refused with its key
        raise ValueError(f"must be {FORMS}")
    return v


class SourceConfig(Strict):
    type: Literal["mic", "file", "stdin", "url"] = "mic"
    device: str | int | None = None
    path: Path | None = None
    realtime: bool = False
    sample_rate: PositiveInt | None = None
    channels: PositiveInt | None = None
    format: Literal["s16le", "s32le", "f32le"] = "s16le"
    block_seconds: PositiveFloat = 0.1
    # a network stream (type: url)
    url: str | None = None
    stall_seconds: PositiveFloat = 10.0
    reconnect_min_seconds: PositiveFloat = 1.0
    reconnect_max_seconds: PositiveFloat = 60.0
    rtsp_transport: Literal["tcp", "udp", "udp_multicast", "http", "https"] = "tcp"
    # more FFmpeg options, passed as text (listen_timeout: 30 means "30")
    options: dict[str, str | int | float] = Field(default_factory=dict)

    _reconnect_in_order = keeps_order("reconnect_min_seconds", "reconnect_max_seconds")

    @model_validator(mode="after")
    def _needs_path(self) -> SourceConfig:
        if self.type == "file" and self.path is None:
            raise at_key("path", "is required for a file source (or write source: file:PATH)")
        return self

    @model_validator(mode="after")
    def _url_fits(self) -> SourceConfig:
        if self.type != "url":
            if self.url is not None:
                raise at_key("type", f"is {self.type} but url is set: set type: url to "
                             "listen to the stream (or remove url)")
            return self
        if not self.url:
            raise at_key("url", "is required for a url source (or write source: URL)")
        if not is_network_url(self.url):
            raise at_key("url", f"is not a stream URL FFmpeg can open (value not shown: it "
                         f"may hold a password): use one of {', '.join(s + '://' for s in SCHEMES)}"
                         " or the path of an RTP .sdp file")
        return self

    @property
    def shown(self) -> str:
        """What the source is, safe to print (a URL with its credentials masked)."""
        if self.type == "url" and self.url:
            return mask_url(self.url)
        if self.type == "file":
            return f"file:{self.path}"
        return self.type
