// listener's page: plain JavaScript, no build step. Reads the REST API (README.md).
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k);
  return e;
};
const api = async (path, opts) => {
  const r = await fetch(path, opts);
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
};
const local = (iso) => new Date(iso).toLocaleString();
const pct = (x) => `${Math.max(0, Math.min(1, x)) * 100}%`;

// --- live: level and per-trigger score bars -------------------------------------------
const rows = {};
function triggerRow(t) {
  const box = el("input", { type: "checkbox", class: "switch", title: "enabled" });
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      await api(`/api/triggers/${encodeURIComponent(t.name)}/enabled`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ enabled: box.checked }) });
    } catch (err) { alert(err.message); }
    box.disabled = false;
  });
  const row = el("div", { class: "trigger", "data-name": t.name },
    el("span", { class: "name", textContent: t.name }),
    el("div", { class: "bar" }, el("div", { class: "fill" }),
      el("div", { class: "mark on" }), el("div", { class: "mark off" })),
    el("span", { class: "score" }), el("label", { class: "state" }, box, el("span", { class: "st" })));
  $("#triggers").append(row);
  const opt = el("option", { value: t.name, textContent: t.name });
  $("#f-trigger").append(opt);
  return row;
}
function showLive(msg) {
  $("#level").textContent = msg.level_dbfs === null ? "level – dBFS"
    : `level ${msg.level_dbfs.toFixed(1)} dBFS${msg.gated ? " (below the gate)" : ""}`;
  for (const t of msg.triggers) {
    const row = rows[t.name] || (rows[t.name] = triggerRow(t));
    $(".fill", row).style.width = pct(t.score);
    $(".mark.on", row).style.left = pct(t.on_threshold);
    $(".mark.off", row).style.left = pct(t.off_threshold);
    $(".score", row).textContent = t.score.toFixed(3);
    row.dataset.score = t.score;
    row.classList.toggle("active", t.active);
    row.classList.toggle("disabled", !t.enabled);
    const box = $(".switch", row);
    if (!box.disabled) box.checked = t.enabled;
    $(".st", row).textContent = t.active ? " ON" : t.enabled ? "" : " off";
    row.title = `on ≥ ${t.on_threshold}, off < ${t.off_threshold}; best match: ${t.match}`;
  }
  if (msg.events_seen !== lastEvents) { lastEvents = msg.events_seen; loadEvents(true); }
}
let lastEvents = null;
function connect() {
  const src = new EventSource("/api/live");
  src.onopen = () => { $("#conn").textContent = "live"; };
  src.onmessage = (e) => showLive(JSON.parse(e.data));
  src.onerror = () => { $("#conn").textContent = "reconnecting…"; };
}

// --- events ----------------------------------------------------------------------------
let next = null;
async function loadEvents(fresh) {
  const q = new URLSearchParams({ type: "end", limit: "20" });
  const f = { trigger: $("#f-trigger").value, stream: $("#f-stream").value, day: $("#f-day").value };
  for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
  if (!fresh && next !== null) q.set("before", next);
  let page;
  try { page = await api(`/api/events?${q}`); } catch (err) { return; }
  if (fresh) $("#events").replaceChildren();
  for (const ev of page.events) $("#events").append(eventItem(ev));
  next = page.next;
  $("#more").hidden = next === null;
}
function eventItem(ev) {
  const dur = ev.duration !== undefined ? ` ${ev.duration.toFixed(1)} s` : "";
  const summary = el("summary", {
    textContent: `${local(ev.time)} ${ev.trigger} peak ${ev.peak_score.toFixed(3)}${dur}` });
  const item = el("details", { class: "event", "data-id": ev.id }, summary);
  item.addEventListener("toggle", () => item.open && openEvent(item, ev), { once: true });
  return el("li", {}, item);
}
async function openEvent(item, ev) {
  const chart = el("canvas", { class: "timeline", width: 600, height: 100 });
  item.append(el("div", { class: "muted", textContent: `match: ${ev.match}` }), chart);
  if (ev.clip) {
    const url = `/api/events/${ev.id}/clip.wav`;
    const wave = el("canvas", { class: "wave", width: 600, height: 80 });
    const like = el("button", { class: "similar", textContent: "find similar moments" });
    like.addEventListener("click", () => runSearch({ clip: ev.id, since: $("#since").value }));
    item.append(el("audio", { class: "clip", controls: true, preload: "auto", src: url }), wave,
      like);
    drawWave(wave, url);
  }
  try {
    const tl = await api(`/api/events/${ev.id}/timeline`);
    drawLine(chart, tl.ts, tl.scores, ev.details.on_threshold, tl.event_ts);
  } catch (err) { /* no embeddings kept for this time */ }
}
async function drawWave(canvas, url) {
  const buf = await (await fetch(url)).arrayBuffer();
  const ctx = new (window.OfflineAudioContext || window.webkitOfflineAudioContext)(1, 1, 48000);
  const audio = await ctx.decodeAudioData(buf);
  const data = audio.getChannelData(0), g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, step = Math.max(1, Math.floor(data.length / w));
  g.fillStyle = "#546e7a";
  for (let x = 0; x < w; x++) {
    let lo = 0, hi = 0;
    for (let i = x * step; i < (x + 1) * step && i < data.length; i++) {
      lo = Math.min(lo, data[i]); hi = Math.max(hi, data[i]);
    }
    g.fillRect(x, (1 - hi) * h / 2, 1, Math.max(1, (hi - lo) * h / 2));
  }
}
function drawLine(canvas, ts, scores, threshold, marks = []) {
  const g = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  if (!ts.length) return;
  const t0 = ts[0], t1 = ts[ts.length - 1] || t0 + 1, span = Math.max(t1 - t0, 1);
  const lo = Math.min(0, ...scores), hi = Math.max(1, ...scores);
  const x = (t) => (t - t0) / span * (w - 4) + 2, y = (s) => h - (s - lo) / (hi - lo) * h;
  g.strokeStyle = "#c62828"; g.setLineDash([4, 3]);
  if (threshold !== undefined) { g.beginPath(); g.moveTo(0, y(threshold)); g.lineTo(w, y(threshold)); g.stroke(); }
  g.setLineDash([]); g.strokeStyle = "#999";
  for (const m of marks) { g.beginPath(); g.moveTo(x(m), 0); g.lineTo(x(m), h); g.stroke(); }
  g.strokeStyle = "#1976d2"; g.lineWidth = 2; g.beginPath();
  ts.forEach((t, i) => (i ? g.lineTo(x(t), y(scores[i])) : g.moveTo(x(t), y(scores[i]))));
  g.stroke();
}

// --- search and try a prompt -----------------------------------------------------------
$("#search").addEventListener("submit", (e) => {
  e.preventDefault();
  runSearch({ q: $("#q").value, since: $("#since").value });
});
async function runSearch(params) {
  const q = new URLSearchParams(params);
  $("#search-box").scrollIntoView();
  $("#results").replaceChildren(el("li", { class: "muted", textContent: "searching…" }));
  try {
    const res = await api(`/api/search?${q}`);
    $("#results").replaceChildren(...res.spans.map(spanItem));
    if (!res.spans.length) $("#results").append(el("li", { textContent: "nothing recorded" }));
  } catch (err) { $("#results").replaceChildren(el("li", { textContent: err.message })); }
}
function spanItem(s) {
  const li = el("li", { class: "span", "data-start-ts": s.start_ts, "data-end-ts": s.end_ts,
    textContent: `${local(s.start)} – ${new Date(s.end).toLocaleTimeString()}  score ${s.score.toFixed(3)} (${s.stream})` });
  if (s.clip_event) {
    li.append(" ", el("audio", { controls: true, preload: "none",
      src: `/api/events/${s.clip_event}/clip.wav` }));
  }
  return li;
}
$("#try").addEventListener("submit", async (e) => {
  e.preventDefault();
  const q = new URLSearchParams({ q: $("#try-q").value, minutes: $("#try-minutes").value });
  try {
    const res = await api(`/api/try?${q}`);
    drawLine($("#try-chart"), res.ts, res.scores);
    const best = res.spans[0];
    $("#try-info").textContent = best
      ? `best ${best.score.toFixed(3)} at ${local(best.peak_time)}` : "nothing recorded";
  } catch (err) { $("#try-info").textContent = err.message; }
});

for (const id of ["#f-trigger", "#f-stream", "#f-day"]) $(id).addEventListener("change", () => loadEvents(true));
$("#more").addEventListener("click", () => loadEvents(false));
api("/api/status").then(showLive).catch(() => {});
connect();
loadEvents(true);
