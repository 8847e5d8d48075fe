"""The web page's routes (bottle): the page, the REST API and the live stream.

Everything here reads what others own: trigger states come from the live feed (the
detector's results), ``enabled`` is changed through the same command handler as
MQTT's switches (listener/service/commands.py), events and embeddings come from the
history database (read-only connections), clips from the clips directory (a clip is
only ever served from inside it). The API is documented in README.md ("Web page").
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bottle
import numpy as np

from listener.detect.triggers import TriggerSet
from listener.history.search import merge_spans, parse_duration, score_windows, timeline
from listener.history.store import HistoryReader, WindowRow, Windows, iso_ts
from listener.service.commands import Commands
from listener.web.live import MIN_INTERVAL, LiveFeed

STATIC = Path(__file__).parent / "static"
EVENT_ID = re.compile(r"[0-9a-f]{32}")
KEEPALIVE_SECONDS = 15.0  # a comment line on an idle live stream (proxies, dead peers)
PAGE_LIMIT = 200
MAX_LIVE = 5  # open live streams (one server thread each; the rest serve the API)


@dataclass
class WebContext:
    """What the page reads from the daemon (each from its owner)."""

    live: LiveFeed
    commands: Commands
    history: Path | None
    clips_dir: Path | None
    embed_text: Callable[[str], np.ndarray]
    embed_audio: Callable[[Path], np.ndarray]  # a recording -> its embedding
    trigger_set: Callable[[], TriggerSet]
    stats: Callable[[], dict[str, Any]]
    pending: Callable[[], list[WindowRow]]  # windows the history has not written yet
    model_id: str
    stream: str
    #: a trigger's key in the switch store (several streams: ``<stream>/<trigger>``)
    switch_key: Callable[[str], str] = lambda name: name


def _json_error(res: bottle.HTTPError) -> str:
    bottle.response.content_type = "application/json"
    return json.dumps({"error": res.body, "status": res.status_code})


class WebApp:
    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.stopping = threading.Event()
        self._embed_lock = threading.Lock()  # the text tower runs once at a time
        self._live_lock = threading.Lock()
        self.live_clients = 0
        app = self.app = bottle.Bottle(autojson=True)
        app.default_error_handler = _json_error  # type: ignore[method-assign]
        app.route("/", callback=self.page)
        app.route("/static/<name>", callback=self.static)
        app.route("/api/status", callback=self.status)
        app.route("/api/live", callback=self.live)
        app.route("/api/events", callback=self.events)
        app.route("/api/events/<event_id>", callback=self.event)
        app.route("/api/events/<event_id>/clip.wav", callback=self.clip)
        app.route("/api/events/<event_id>/timeline", callback=self.event_timeline)
        app.route("/api/search", callback=self.search)
        app.route("/api/try", callback=self.try_prompt)
        app.route("/api/triggers/<name>/enabled", method="POST", callback=self.switch)

    # --- page -------------------------------------------------------------------------------

    def page(self) -> Any:
        return bottle.static_file("index.html", root=str(STATIC))

    def static(self, name: str) -> Any:
        return bottle.static_file(name, root=str(STATIC))

    # --- state ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        _, live = self.ctx.live.wait(-1, 0)
        counts = {}
        if self.ctx.history is not None and self.ctx.history.is_file():
            reader = HistoryReader(self.ctx.history)
            try:
                counts = reader.counts()
            finally:
                reader.close()
        return {"model": self.ctx.model_id, "stream": self.ctx.stream,
                "stats": self.ctx.stats(), "history": counts, **(live or {"triggers": []})}

    def live(self) -> Iterator[str]:
        """Server-sent events: one ``data:`` line per new state, newest only."""
        with self._live_lock:
            if self.live_clients >= MAX_LIVE:
                bottle.abort(503, f"{MAX_LIVE} pages are open already; close one")
            self.live_clients += 1
        bottle.response.content_type = "text/event-stream"
        bottle.response.set_header("Cache-Control", "no-cache")
        bottle.response.set_header("X-Accel-Buffering", "no")
        feed, seq, last = self.ctx.live, -1, 0.0

        def stream() -> Iterator[str]:
            nonlocal seq, last
            try:
                yield "retry: 2000\n\n"
                while not self.stopping.is_set() and not feed.closed:
                    wait = max(0.0, last + MIN_INTERVAL - time.monotonic())
                    if wait:
                        self.stopping.wait(wait)
                    seq, msg = feed.wait(seq, KEEPALIVE_SECONDS)
                    last = time.monotonic()
                    yield ": keepalive\n\n" if msg is None else f"data: {json.dumps(msg)}\n\n"
            finally:  # the browser left (a failed write closes the generator) or stopping
                with self._live_lock:
                    self.live_clients -= 1
        return stream()

    def switch(self, name: str) -> dict[str, Any]:
        """POST {"enabled": true|false} (JSON only: a cross-site form cannot send it)."""
        body = bottle.request.json if bottle.request.content_type.startswith(
            "application/json") else None
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            bottle.abort(400, 'send JSON {"enabled": true} or {"enabled": false} '
                              "with Content-Type: application/json")
        key = self.ctx.switch_key(name)
        try:
            self.ctx.commands.set_enabled(key, body["enabled"], by="web")
        except KeyError as exc:
            bottle.abort(404, str(exc.args[0]))
        return {"trigger": name, "enabled": self.ctx.commands.switches.enabled(key)}

    # --- history ----------------------------------------------------------------------------

    def _reader(self) -> HistoryReader:
        if self.ctx.history is None or not self.ctx.history.is_file():
            bottle.abort(404, "no history is recorded (web.history.enabled, state_dir)")
        return HistoryReader(self.ctx.history)  # type: ignore[arg-type]

    def events(self) -> dict[str, Any]:
        """Newest first; filters trigger, stream, type, day (UTC YYYY-MM-DD); paging with
        ``before`` (the ``next`` of the previous page) and ``limit``."""
        q = bottle.request.query
        since = until = None
        if q.get("day"):
            try:
                day = datetime.strptime(q["day"], "%Y-%m-%d").replace(tzinfo=timezone.utc)
            except ValueError:
                bottle.abort(400, "day must be YYYY-MM-DD (UTC)")
            since, until = day.timestamp(), day.timestamp() + 86400.0
        limit = min(_int(q.get("limit"), 50, "limit"), PAGE_LIMIT)
        reader = self._reader()
        try:
            rows = reader.events(q.get("trigger") or None, q.get("stream") or None, since, until,
                                 q.get("type") or None, _int(q.get("before"), None, "before"),
                                 limit)
        finally:
            reader.close()
        return {"events": [e for _, e in rows],
                "next": rows[-1][0] if len(rows) == limit else None}

    def _event_rows(self, event_id: str) -> list[dict[str, Any]]:
        if not EVENT_ID.fullmatch(event_id):
            bottle.abort(400, "an event id is 32 hexadecimal digits")
        reader = self._reader()
        try:
            rows = reader.event(event_id)
        finally:
            reader.close()
        if not rows:
            bottle.abort(404, f"no event {event_id} in the history")
        return rows

    def event(self, event_id: str) -> dict[str, Any]:
        return {"rows": self._event_rows(event_id)}

    def _clip_path(self, event_id: str) -> Path:
        """The event's clip, only if it lies inside the clips directory."""
        clip = next((r["clip"] for r in reversed(self._event_rows(event_id)) if r.get("clip")),
                    None)
        if clip is None or self.ctx.clips_dir is None:
            bottle.abort(404, "this event has no clip")
        root = self.ctx.clips_dir.resolve()  # type: ignore[union-attr]
        path = Path(clip).resolve()
        if not path.is_relative_to(root):
            bottle.abort(403, "clip outside the clips directory")
        if not path.is_file():
            bottle.abort(404, "the clip was removed (clips retention)")
        return path

    def clip(self, event_id: str) -> Any:
        path = self._clip_path(event_id)
        return bottle.static_file(path.name, root=str(path.parent), mimetype="audio/wav")

    def event_timeline(self, event_id: str) -> dict[str, Any]:
        """The trigger's score around the event, recomputed from stored embeddings with
        the trigger set in force (the same scoring as the detector)."""
        rows = self._event_rows(event_id)
        trigger = rows[0]["trigger"]
        times = [iso_ts(r["time"]) for r in rows]
        start, end = min(times) - 15.0, max(times) + 15.0
        triggers = self.ctx.trigger_set()
        ts, scores = [], []
        reader = self._reader()
        try:
            stored = list(reader.window_blocks(start, until=end))
        finally:
            reader.close()
        recent = [w for w in self.ctx.pending() if start <= w.ts <= end]
        for block in [*stored, Windows.of(recent)] if recent else stored:
            for t, emb in zip(block.ts, block.emb, strict=True):
                s = triggers.score(triggers.similarities(emb.astype(np.float32)))
                if trigger in s:
                    ts.append(round(float(t), 3))
                    scores.append(round(s[trigger].score, 4))
        return {"trigger": trigger, "ts": ts, "scores": scores,
                "event_ts": [round(t, 3) for t in times]}

    # --- search -----------------------------------------------------------------------------

    def _embed(self, text: str) -> np.ndarray:
        if not text.strip():
            bottle.abort(400, "q (what to search for) is empty")
        with self._embed_lock:
            return self.ctx.embed_text(text.strip())

    def search(self) -> dict[str, Any]:
        """By words (``q``) or by an event's clip (``clip``: its id)."""
        q = bottle.request.query
        since = _duration(q.get("since"), 86400.0)
        query = self._clip_embedding(q["clip"]) if q.get("clip") else self._embed(q.get("q", ""))
        reader = self._reader()
        try:
            t0 = time.perf_counter()
            spans = merge_spans(score_windows(reader, query, time.time() - since,
                                              q.get("stream") or None, self.ctx.pending()),
                                top=min(_int(q.get("top"), 10, "top"), 100))
            found = []
            for s in spans:
                ev = reader.clip_near(s.start, s.end, s.stream)
                found.append({**s.to_dict(), "clip_event": None if ev is None else ev["id"]})
        finally:
            reader.close()
        return {"query": q.get("q") or q.get("clip"), "spans": found,
                "seconds": round(time.perf_counter() - t0, 3)}

    def _clip_embedding(self, event_id: str) -> np.ndarray:
        """The audio tower's embedding of an event's clip (search by example)."""
        path = self._clip_path(event_id)
        with self._embed_lock:
            return self.ctx.embed_audio(path)

    def try_prompt(self) -> dict[str, Any]:
        """A prompt scored over the last ``minutes`` of stored windows: a score line."""
        q = bottle.request.query
        minutes = _int(q.get("minutes"), 10, "minutes")
        query = self._embed(q.get("q", ""))
        reader = self._reader()
        try:
            scored = score_windows(reader, query, time.time() - minutes * 60.0,
                                   q.get("stream") or None, self.ctx.pending())
        finally:
            reader.close()
        return {"query": q.get("q"), "minutes": minutes, **timeline(scored),
                "spans": [s.to_dict() for s in merge_spans(scored, top=5)]}


def _int(text: str | None, default: Any, name: str) -> Any:
    if text in (None, ""):
        return default
    try:
        value = int(text)  # type: ignore[arg-type]
    except ValueError:
        value = -1
    if value < 1:
        bottle.abort(400, f"{name} must be a positive whole number")
    return value


def _duration(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return parse_duration(text)
    except ValueError as exc:
        bottle.abort(400, str(exc))
        raise
