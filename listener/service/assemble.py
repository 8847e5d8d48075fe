"""Wiring: a validated config -> source, model stack, trigger set, detector, pipeline.

Everything is built once, in the order the data flows, before any audio moves: the
source the config names, the model stack (so the model id is known when sinks are
made), the trigger set (prompt embeddings from the cache, example embeddings from the
tower), a detector per stream, and the pipeline around it. `listener run`
(daemon.py) wires its long-lived parts itself from these functions; `scan`, `top`,
`calibrate` and the tests use :func:`build_pipeline`, which does the whole chain for
one source.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from listener.audio.decode import SAMPLE_RATE
from listener.audio.mic import MicSource
from listener.audio.sources import FileSource, Source, StdinSource
from listener.config.schema import Config, SourceConfig
from listener.config.streams import Stream, streams_of
from listener.detect.detector import Detector
from listener.detect.novelty import NoveltyGate, NoveltySettings
from listener.detect.triggers import TriggerSet, TriggerSpec
from listener.errors import ConfigError
from listener.model.stack import ModelStack
from listener.service.clips import ClipRecorder
from listener.service.pipeline import Pipeline
from listener.service.sinks import FanOut, Sink
from listener.service.state_files import StateDir
from listener.service.switches import SwitchStore, switch_key


def require_triggers(config: Config, where: str | Path | None) -> None:
    """The one rule for commands that listen: at least one trigger (exit 2 otherwise)."""
    if not config.triggers:
        msg = (
            f"{where or 'config'}: triggers: no triggers configured, nothing to listen for "
            "(add a 'triggers:' list with at least one trigger; config.example.yaml shows how)"
        )
        raise ConfigError(msg, [msg])


def trigger_specs(config: Config, names: Sequence[str] | None = None) -> list[TriggerSpec]:
    """Each configured trigger (of ``names``, when given: a stream's) as plain data with
    its effective settings."""
    return [
        TriggerSpec(name=t.name, label=t.display_name, settings=config.trigger_settings(t),
                    prompts=tuple(t.prompts), examples=tuple(Path(e) for e in t.examples),
                    negatives=tuple(t.negatives))
        for t in config.triggers if names is None or t.name in names
    ]


def configured_enabled(config: Config) -> dict[str, bool]:
    """The config's ``enabled`` per trigger and stream (what the switch store falls back
    to), keyed by :func:`switch_key`."""
    enabled = {t.name: t.enabled for t in config.triggers}
    return {switch_key(s.name if s.named else None, name): enabled[name]
            for s in streams_of(config) for name in s.triggers}


def make_source(cfg: SourceConfig, realtime: bool | None = None) -> Source:
    """The source a config describes. ``realtime`` overrides ``source.realtime`` (a file:
    paced like a microphone; stdin: the writer is live, so stale windows may be skipped;
    a microphone and a network stream are always live)."""
    if cfg.type == "mic":
        return MicSource(cfg.device, cfg.block_seconds, cfg.sample_rate, cfg.channels)
    if cfg.type == "url":
        from listener.audio.network import UrlSource  # numpy + PyAV: only when used

        assert cfg.url is not None
        return UrlSource(cfg.url, stall_seconds=cfg.stall_seconds,
                         reconnect_min_seconds=cfg.reconnect_min_seconds,
                         reconnect_max_seconds=cfg.reconnect_max_seconds,
                         rtsp_transport=cfg.rtsp_transport,
                         options={k: str(v) for k, v in cfg.options.items()},
                         block_seconds=cfg.block_seconds)
    rt = cfg.realtime if realtime is None else realtime
    if cfg.type == "stdin":
        return StdinSource(cfg.format, cfg.sample_rate, cfg.channels, cfg.block_seconds,
                           realtime=rt)
    assert cfg.path is not None
    return FileSource(cfg.path, cfg.block_seconds, realtime=rt)


def state_dir(config: Config) -> StateDir:
    return StateDir(config.resolved_state_dir)


def load_model(config: Config) -> ModelStack:
    """The model stack the config names, its files checked against the manifest (the
    hashes memoised in the state directory, so a warm start does not read the towers)."""
    m, state = config.model, state_dir(config)
    return ModelStack(m.dir, m.precision, m.provider, m.threads, state.prompt_cache,
                      hash_memo=state.model_hashes, check_hashes=m.check_hashes)


def build_trigger_set(config: Config, stack: ModelStack, probes: Sequence[str] = (),
                      stream: Stream | None = None) -> TriggerSet:
    """May run the text tower (prompts missing from the cache) and the audio tower
    (examples not embedded yet); call it outside the pipeline's lock. ``stream``: only
    its triggers."""
    names = None if stream is None else stream.triggers
    return TriggerSet(trigger_specs(config, names), config.background, stack.embed_texts,
                      stack.embed_example, probes=probes)


def build_detector(config: Config, stack: ModelStack, switches: SwitchStore,
                   probes: Sequence[str] = (), stream: Stream | None = None) -> Detector:
    """A stream's detector (default: the single-source form's): its own state, the
    shared tower; its switches are the (stream, trigger) keys of the store."""
    key = None if stream is None or not stream.named else stream.name
    return Detector(
        build_trigger_set(config, stack, probes, stream), stack.window_embedder(),
        rate=SAMPLE_RATE,
        hop_samples=round(config.audio.hop_seconds * SAMPLE_RATE),
        gate_dbfs=config.audio.min_level_dbfs, model_id=stack.model_id,
        is_enabled=switches.enabled if key is None else
        (lambda name: switches.enabled(switch_key(key, name))),
        novelty=novelty_gate(config, stack),
    )


def novelty_gate(config: Config, stack: ModelStack) -> NoveltyGate | None:
    """The configured novelty gate (None when switched off); its hop is in log-mel frames."""
    a = config.audio
    if not a.novelty.enabled:
        return None
    n = a.novelty
    settings = NoveltySettings(change_db=n.change_db, min_bands=n.min_bands,
                               shift_db=n.shift_db, activity_change=n.activity_change,
                               near_threshold=n.near_threshold)
    frames = round(a.hop_seconds * SAMPLE_RATE / stack.logmel.hop_length)
    return NoveltyGate(settings, frames, a.window_seconds)


def make_clips(config: Config) -> ClipRecorder | None:
    if not config.clips.enabled:
        return None
    return ClipRecorder(config.clips, config.clips.dir or state_dir(config).clips, SAMPLE_RATE)


def build_pipeline(
    config: Config,
    sinks: Sequence[Sink],
    *,
    source: Source | None = None,
    realtime: bool | None = None,
    heartbeat: Callable[[], None] | None = None,
    switches: SwitchStore | None = None,
    probes: Sequence[str] = (),
    stack: ModelStack | None = None,
) -> Pipeline:
    """The whole chain for one source (default: the config's; ``realtime`` overrides the
    pacing of file sources). Without ``switches`` the config's ``enabled`` applies, kept
    in memory only (scan, top and calibrate never touch the daemon's stored switches).
    A sink's error ends the run (the command's output is its product)."""
    stack = stack or load_model(config)
    switches = switches or SwitchStore(None, configured_enabled(config))
    detector = build_detector(config, stack, switches, probes)
    return Pipeline(config.audio, source or make_source(config.source, realtime), detector,
                    FanOut(sinks, isolate=False), clips=make_clips(config),
                    heartbeat=heartbeat)
