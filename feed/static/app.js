// twinmon ward board: vanilla JS, no build step, no network beyond this server. What it computes is in board.js
// (unit-tested with node --test); this file is the DOM, the API and the live stream.
"use strict";

const B = window.TwinmonBoard;
const state = { token: sessionStorage.getItem("twinmon-token"), alerts: new Map(), patients: new Map(),
  trends: new Map(), levels: new Map(), selected: null, detail: null, history: [], windowMin: 60, seen: {},
  sound: false, audio: null, firstLoad: true };
window.__twinmonSeen = state.seen; // alert id -> Date.now() when it first appeared on the page (for tests)
const $ = (sel) => document.querySelector(sel);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

function svgEl(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  const resp = await fetch(path, { ...options, headers });
  if (resp.status === 401) { signOut("Your token was refused (unknown or revoked)."); throw new Error("401"); }
  const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : null;
  if (!resp.ok) throw new Error(body?.error || `HTTP ${resp.status}`);
  return body;
}

function signOut(message) {
  sessionStorage.removeItem("twinmon-token");
  state.token = null;
  $("#feed").hidden = true; $("#signin").hidden = false; $("#signout").hidden = true; $("#sound-label").hidden = true;
  $("#who").textContent = "";
  $("#signin-error").textContent = message || "";
  if (state.abort) state.abort.abort();
}

const patientHref = (pid) => `#/patient/${encodeURIComponent(pid)}`;

// --- attention: new high alerts flash, are announced to screen readers and, if the user allows, sound ---
function beep() {
  if (!state.sound) return;
  try {
    state.audio = state.audio || new AudioContext();
    const ctx = state.audio;
    for (const start of [0, 0.35]) {
      const osc = ctx.createOscillator(), gain = ctx.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.15;
      osc.connect(gain).connect(ctx.destination);
      osc.start(ctx.currentTime + start); osc.stop(ctx.currentTime + start + 0.2);
    }
  } catch (e) { /* no audio device: the visual cue remains */ }
}

function attend(alerts) {
  const fresh = B.newHigh(alerts, state.levels);
  state.levels = new Map(alerts.map((a) => [a.alert_id, a.level]));
  if (state.firstLoad) { state.firstLoad = false; return; } // what was open before the page loaded is not news
  if (!fresh.length) return;
  const names = fresh.map((a) => a.patient_id).join(", ");
  $("#announce").textContent = `New high alert: ${names}`;
  for (const a of fresh) document.querySelector(`.alert[data-alert-id='${a.alert_id}']`)?.classList.add("fresh");
  beep();
}

function updateTitle() {
  const high = [...state.alerts.values()].filter((a) => a.level === "high" && !a.acknowledged_by).length;
  document.title = `${high ? `(${high} high) ` : ""}twinmon ward board`;
}

// --- alerts: one card each, updated in place so a reason being typed survives a refresh ---
const LEVELS = { high: 3, medium: 2, low: 1 };

function renderAlerts() {
  const list = [...state.alerts.values()].sort((a, b) =>
    (LEVELS[b.level] - LEVELS[a.level]) || (b.raised_at - a.raised_at));
  const ul = $("#alerts");
  const existing = new Map([...ul.children].map((li) => [li.dataset.alertId, li]));
  const items = list.map((a) => {
    const li = existing.get(a.alert_id) || alertItem(a);
    fillAlert(li, a);
    return li;
  });
  for (const [id, li] of existing) if (!state.alerts.has(id)) li.remove();
  if ([...ul.children].some((li, i) => li !== items[i]) || ul.children.length !== items.length) {
    // Reordering moves the focused element: put the focus back where it was.
    const focused = document.activeElement;
    ul.append(...items);
    if (focused && ul.contains(focused)) focused.focus();
  }
  $("#alert-count").textContent = `(${list.length})`;
  $("#no-alerts").hidden = list.length > 0;
  for (const a of list) if (!(a.alert_id in state.seen)) state.seen[a.alert_id] = Date.now();
  attend(list);
  updateTitle();
  renderPatientAlerts();
}

function alertItem(a) {
  const id = a.alert_id;
  const li = el("li", { class: "alert", "data-alert-id": id });
  const ack = el("button", { type: "button", class: "ack", text: "Acknowledge" });
  ack.addEventListener("click", () => act(state.alerts.get(id), "acknowledge", null, ack));
  const reason = el("input", { class: "reason", id: `reason-${id}`, autocomplete: "off", placeholder: "why resolved" });
  const resolve = el("button", { type: "button", class: "resolve", text: "Resolve" });
  resolve.addEventListener("click", () => {
    if (!reason.value.trim()) { reason.focus(); reason.placeholder = "a reason is required"; return; }
    act(state.alerts.get(id), "resolve", reason.value.trim(), resolve);
  });
  li.append(
    el("div", { class: "alert-head" }, el("strong", { class: "level" }), el("a", { class: "patient" }),
      el("span", { class: "cond" }), el("span", { class: "since" })),
    el("p", { class: "why" }),
    el("div", { class: "alert-foot" }, el("span", { class: "who" }),
      el("span", { class: "actions" }, ack, el("label", { class: "visually-hidden", for: reason.id,
        text: "Reason to resolve" }), reason, resolve)));
  return li;
}

function fillAlert(li, a) {
  // The attention cue lasts until someone acknowledges the alert.
  li.className = `alert level-${a.level}${li.classList.contains("fresh") && !a.acknowledged_by ? " fresh" : ""}`;
  li.dataset.state = a.acknowledged_by ? "acknowledged" : "open";
  li.querySelector(".level").textContent = a.level.toUpperCase();
  const link = li.querySelector(".patient");
  link.textContent = a.patient_id; link.href = patientHref(a.patient_id);
  li.querySelector(".cond").textContent = a.condition.replace("_", " ");
  const since = li.querySelector(".since");
  since.dataset.since = a.raised_at;
  since.textContent = B.ago(a.raised_at, Date.now());
  since.title = `raised ${new Date(a.raised_at).toLocaleString()}`;
  li.querySelector(".why").textContent = B.alertWhy(a, state.patients.get(a.patient_id), Date.now());
  li.querySelector(".who").textContent = a.acknowledged_by
    ? `acknowledged by ${a.acknowledged_by} ${B.agoPhrase(a.acknowledged_at, Date.now())}` : "not acknowledged";
  const ack = li.querySelector("button.ack");
  ack.hidden = Boolean(a.acknowledged_by);
}

async function act(a, action, reason, button) {
  if (!a) return;
  button.disabled = true;
  try {
    await api(`/api/alerts/${a.alert_id}/${action}`, reason === null ? { method: "POST" } : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ reason }) });
    button.textContent = action === "acknowledge" ? "Sent…" : "Resolving…";
  } catch (e) { button.disabled = false; button.title = e.message; }
}

function applyEvent(e) {
  const known = state.alerts.get(e.alert_id);
  if (e.kind === "resolved") state.alerts.delete(e.alert_id);
  else if (e.kind === "acknowledged") { if (known) Object.assign(known, { acknowledged_by: e.user, acknowledged_at: e.at }); }
  else state.alerts.set(e.alert_id, { ...(known || { raised_at: e.at, acknowledged_by: null, acknowledged_at: null }),
    alert_id: e.alert_id, patient_id: e.patient_id, condition: e.condition, level: e.level, escalated_at: e.at });
  if (state.alerts.has(e.alert_id)) state.alerts.get(e.alert_id).touched = Date.now();
  renderAlerts();
  renderBoard();
  if (state.selected === e.patient_id) loadPatient(e.patient_id, false);
}

async function reloadAlerts() {
  const fresh = await api("/api/alerts");
  const next = new Map(fresh.map((a) => [a.alert_id, a]));
  // An event newer than the stored state (the worker writes Redis just after publishing) wins for 10 s.
  for (const [id, a] of state.alerts) if (a.touched && Date.now() - a.touched < 10000 && !next.has(id)) next.set(id, a);
  state.alerts = next;
  renderAlerts();
}

// --- the ward board: a tile per patient ---
function controls() {
  return { text: $("#f-text").value, bandFilter: $("#f-band").value, alertsOnly: $("#f-alerts").checked,
    dataProblems: $("#f-data").checked, sort: $("#f-sort").value };
}

function renderBoard() {
  const all = [...state.patients.values()];
  const shown = B.arrange(all, controls());
  $("#patient-count").textContent = shown.length === all.length ? `(${all.length})` : `(${shown.length} of ${all.length})`;
  const ul = $("#board-tiles");
  const existing = new Map([...ul.children].map((li) => [li.dataset.patientId, li]));
  const tiles = shown.map((s) => { const li = existing.get(s.patient_id) || el("li"); fillTile(li, s); return li; });
  for (const [pid, li] of existing) if (!shown.some((s) => s.patient_id === pid)) li.remove();
  if ([...ul.children].some((li, i) => li !== tiles[i]) || ul.children.length !== tiles.length) {
    const focused = document.activeElement;
    ul.append(...tiles);
    if (focused && ul.contains(focused)) focused.focus();
  }
}

function fillTile(li, s) {
  const now = Date.now();
  const band = B.band(s);
  const data = B.dataState(s);
  li.className = `tile band-${band}`;
  li.dataset.patientId = s.patient_id;
  li.dataset.band = band;
  const alertLevel = s.open_alerts ? s.highest_alert : null;
  const flags = el("p", { class: "flags" });
  if (alertLevel) flags.append(el("span", { class: `chip chip-alert level-${alertLevel}`,
    text: `${alertLevel.toUpperCase()} alert${s.open_alerts > 1 ? ` +${s.open_alerts - 1}` : ""}` }));
  if (data.noData) flags.append(el("span", { class: "chip chip-data", text: "no data yet" }));
  if (data.stale.length) flags.append(el("span", { class: "chip chip-data",
    text: `stale: ${data.stale.map(B.label).join(", ")}` }));
  if (data.poorSignal.length) flags.append(el("span", { class: "chip chip-data",
    text: `poor signal: ${data.poorSignal.map(B.label).join(", ")}` }));
  const trend = state.trends.get(s.patient_id) || {};
  const vitals = el("ul", { class: "vitals" }, ...B.VITALS.map((v) => vitalRow(v, s, trend[v.metric] || [], now)));
  li.replaceChildren(...[
    el("div", { class: "tile-head" }, el("a", { class: "pid", href: patientHref(s.patient_id), text: s.patient_id }),
      el("span", { class: "score", title: s.news2 ? news2Notes(s.news2) : "", text: B.bandLabel(s.news2) })),
    flags.children.length ? flags : null,
    vitals,
    el("p", { class: "tile-foot" },
      el("span", {}, "last reading ", el("span", { class: "ago", "data-ago": s.last_reading_at ?? "", text:
        B.agoPhrase(s.last_reading_at, now) })),
      el("span", { text: riskText(s) })),
  ].filter(Boolean));
}

// A calibrated probability when the policy has one; otherwise the raw score, which is not a probability.
function riskText(s) {
  if (s.p_news2_5_60min_calibrated !== null && s.p_news2_5_60min_calibrated !== undefined) {
    return `P(≥5 in 1 h) ${Math.round(s.p_news2_5_60min_calibrated * 100)}%`;
  }
  return s.p_news2_5_60min === null ? "" : `risk score ≥5 in 1 h ${s.p_news2_5_60min.toFixed(2)}`;
}

function news2Notes(n) {
  const notes = [];
  if (n.missing.length) notes.push(`missing: ${n.missing.map(B.paramLabel).join(", ")}`);
  if (n.assumed.length) notes.push(`assumed: ${n.assumed.join(", ")}`);
  return notes.join("; ");
}

function vitalRow(v, s, points, now) {
  const b = (s.vitals || {})[v.metric];
  const sub = b ? b.news2_subscore : null;
  const li = el("li", { class: `vital${sub ? ` sub-${sub}` : ""}${b && b.stale ? " stale" : ""}`, "data-metric": v.metric });
  const arrow = b ? B.arrow(v.metric, b.trend_per_min) : "";
  const spoken = b ? `${v.label} ${B.fmt(v.metric, b.estimate)} ${B.unit(b.unit)}, ${B.arrowWord(arrow)}`
    + `${sub !== null && sub !== undefined ? `, scores ${sub}` : ""}${b.stale ? ", stale" : ""}` : `${v.label} not measured`;
  li.setAttribute("aria-label", spoken);
  li.append(el("span", { class: "vl", text: v.label, "aria-hidden": "true" }),
    el("span", { class: "vv", "aria-hidden": "true", text: b ? B.fmt(v.metric, b.estimate) : "–" }),
    el("span", { class: "arrow", "aria-hidden": "true", text: arrow }));
  li.append(sparkline(v.metric, points, now));
  return li;
}

function sparkline(metric, points, now) {
  const w = 90, h = 22;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: "spark", "aria-hidden": "true",
    focusable: "false" });
  if (points.length) {
    const [lo, hi] = B.extent(points.map((p) => p[1]), null, B.MIN_SPAN[metric] || 1);
    const t0 = now - 6 * 3600000;
    svg.append(svgEl("path", { d: B.sparkPath(points, t0, now, lo, hi, w, h, 25 * 60000), fill: "none",
      stroke: "currentColor", "stroke-width": 1.4 }));
  }
  return svg;
}

async function reloadTrends() {
  const trends = await api("/api/trends?hours=6");
  state.trends = new Map(trends.map((t) => [t.patient_id, t.vitals]));
  renderBoard();
}

// --- the patient view ---
function route() {
  const m = location.hash.match(/^#\/patient\/(.+)$/);
  const pid = m ? decodeURIComponent(m[1]) : null;
  if (pid) {
    $("#board").hidden = true; $("#patient-view").hidden = false;
    if (pid !== state.selected) { state.selected = pid; state.detail = null; loadPatient(pid, true); }
  } else {
    const from = state.selected;
    state.selected = null;
    $("#patient-view").hidden = true; $("#board").hidden = false;
    if (from) document.querySelector(`.tile[data-patient-id='${CSS.escape(from)}'] a.pid`)?.focus();
  }
}

async function loadPatient(pid, focus) {
  let d, events;
  try {
    [d, events] = await Promise.all([api(`/api/patients/${encodeURIComponent(pid)}?history=5000`),
      api(`/api/patients/${encodeURIComponent(pid)}/alerts?limit=200`)]);
  } catch (e) {
    $("#pv-title").textContent = `${pid}: not found in your team`;
    return;
  }
  if (state.selected !== pid) return;
  state.detail = d; state.history = events.items;
  renderPatient();
  if (focus) $("#pv-title").focus();
}

function renderPatient() {
  const d = state.detail;
  if (!d) return;
  const s = d.summary, n = s.news2, now = Date.now();
  $("#pv-title").textContent = `${s.patient_id} — ${B.bandLabel(n)}`;
  $("#patient-view").dataset.band = B.band(s);
  $("#pv-profile").textContent = B.profileText(d);
  const sub = n ? Object.entries(n.subscores).map(([k, v]) => `${B.paramLabel(k)} ${v}`).join(", ") : "";
  $("#pv-score").textContent = n ? `Subscores: ${sub}${news2Notes(n) ? `; ${news2Notes(n)}` : ""}; last reading `
    + B.agoPhrase(s.last_reading_at, now) : "No readings yet.";
  for (const b of document.querySelectorAll(".pv-window button")) {
    b.setAttribute("aria-pressed", String(Number(b.dataset.window) === state.windowMin));
  }
  const oldest = d.history.length ? Math.min(...d.history.map((h) => h.at)) : null;
  $("#pv-kept").textContent = oldest && now - oldest < state.windowMin * 60000 * 0.95
    ? `history kept covers the last ${B.ago(oldest, now)}` : "";
  const order = [...B.VITALS, ...B.EXTRA].map((v) => v.metric);
  const vitals = [...d.vitals].sort((a, b) => order.indexOf(a.metric) - order.indexOf(b.metric))
    .filter((v) => order.includes(v.metric));
  $("#pv-charts").replaceChildren(...vitals.map((v) => chart(v, d.history.filter((h) => h.metric === v.metric), now,
    s.vitals?.[v.metric]?.news2_subscore)));
  renderPatientAlerts();
  renderTimeline();
}

function renderPatientAlerts() {
  if (!state.selected) return;
  const mine = [...state.alerts.values()].filter((a) => a.patient_id === state.selected);
  $("#pv-alerts").replaceChildren(...(mine.length ? mine.map((a) => el("li", { class: `level-${a.level}`,
    text: `${a.level.toUpperCase()} ${a.condition.replace("_", " ")}: ${B.alertWhy(a, state.patients.get(a.patient_id)
      || state.detail?.summary, Date.now())}; ${a.acknowledged_by ? `acknowledged by ${a.acknowledged_by}` : "not acknowledged"}` }))
    : [el("li", { class: "quiet", text: "No open alerts." })]));
}

function renderTimeline() {
  const lines = B.timeline(state.history);
  $("#pv-timeline").replaceChildren(...(lines.length ? lines.map((l) => el("li", { class: `ev-${l.kind}`, text: l.text }))
    : [el("li", { class: "quiet", text: "No alerts in this episode." })]));
}

const SCORE_FILL = { 1: "#fff59d", 2: "#ffcc80", 3: "#ef9a9a" };

// One SVG per vital: NEWS2 bands behind; estimate with its 95% band and raw readings over the window; forecast cone.
// Drawn at the width of its grid column, so that its text is as large on a phone as on a desktop.
function chartWidth() {
  const grid = $("#pv-charts");
  const cols = getComputedStyle(grid).gridTemplateColumns.split(" ").filter(Boolean).length || 1;
  const gap = parseFloat(getComputedStyle(grid).columnGap) || 0;
  return Math.max(280, Math.min(900, Math.floor((grid.clientWidth - gap * (cols - 1)) / cols) || 640));
}

function chart(v, hist, now, subscore) {
  const W = chartWidth(), H = 170, L = 46, R = 10, T = 22, Bm = 20;
  const windowMs = state.windowMin * 60000;
  const horizon = B.forecastMinutes(state.windowMin);
  const t0 = now - windowMs, t1 = now + horizon * 60000;
  const shown = hist.filter((h) => h.at >= t0 && h.at <= now);
  const cone = v.forecast.filter((f) => f.minutes <= horizon + 1e-9);
  const ys = [v.low95, v.high95];
  for (const h of shown) ys.push(h.raw, h.estimate - 1.96 * h.sd, h.estimate + 1.96 * h.sd);
  for (const f of cone) ys.push(f.low95, f.high95);
  const [y0, y1] = B.extent(ys, v.possible, B.MIN_SPAN[v.metric] || 1);
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const Y = (y) => T + (1 - (Math.min(Math.max(y, y0), y1) - y0) / (y1 - y0)) * (H - T - Bm);
  const path = (pts) => pts.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
  const arrow = B.arrow(v.metric, v.trend_per_min);
  const label = B.label(v.metric);
  const headline = `${label} ${B.fmt(v.metric, v.estimate)} ${B.unit(v.unit)} ${arrow}`
    + `${subscore !== null && subscore !== undefined ? ` (scores ${subscore})` : ""}${v.stale ? " — STALE" : ""}`;
  const fig = el("figure", { class: "chart-wrap" });
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img",
    "aria-label": `${headline}; last reading ${v.last_raw} ${B.agoPhrase(v.last_raw_at, now)}; `
      + `forecast in ${Math.round(horizon)} min ${B.fmt(v.metric, cone.at(-1)?.mean)}` });
  svg.dataset.metric = v.metric;
  const add = (tag, attrs) => { const e = svgEl(tag, attrs); svg.append(e); return e; };
  for (const b of v.news2_bands) {
    if (b.high <= y0 || b.low >= y1 || !b.score) continue;
    const top = Y(Math.min(b.high, y1)), bottom = Y(Math.max(b.low, y0));
    add("rect", { x: L, width: W - L - R, y: top.toFixed(1), height: Math.max(bottom - top, 0).toFixed(1),
      fill: SCORE_FILL[b.score], "fill-opacity": 0.55, class: `nb nb-${b.score}` });
  }
  if (shown.length) {
    const up = shown.map((h) => [h.at, h.estimate + 1.96 * h.sd]);
    const down = shown.map((h) => [h.at, h.estimate - 1.96 * h.sd]).reverse();
    add("path", { d: path([...up, ...down]) + "Z", fill: "#4c8bf5", "fill-opacity": 0.2, class: "band" });
    add("path", { d: path(shown.map((h) => [h.at, h.estimate])), fill: "none", stroke: "#1f5fd1", "stroke-width": 1.6,
      class: "estimate" });
    for (const h of shown) add("circle", { cx: X(h.at).toFixed(1), cy: Y(h.raw).toFixed(1), r: 1.6, fill: "#333", class: "raw" });
  }
  if (cone.length) {
    const pts = cone.map((f) => [now + f.minutes * 60000, f]);
    add("path", { d: path([...pts.map(([t, f]) => [t, f.high95]), ...pts.map(([t, f]) => [t, f.low95]).reverse()]) + "Z",
      fill: "#e36209", "fill-opacity": 0.18, class: "cone" });
    add("path", { d: path(pts.map(([t, f]) => [t, f.mean])), fill: "none", stroke: "#b34d00", "stroke-dasharray": "4 3",
      class: "forecast" });
  }
  add("line", { x1: X(now), x2: X(now), y1: T, y2: H - Bm, stroke: "#555", "stroke-dasharray": "2 2" });
  const u = v.unconfirmed;
  if (u && u.measured_at >= t0) add("circle", { cx: X(u.measured_at).toFixed(1), cy: Y(u.value).toFixed(1), r: 3.5,
    fill: "none", stroke: "#b00020", "stroke-width": 1.6, class: "unconfirmed" });
  const text = (x, y, s, anchor = "start") => { const t = add("text", { x, y, "text-anchor": anchor }); t.textContent = s; };
  text(L - 4, Y(y1) + 4, B.fmt(v.metric, y1), "end");
  text(L - 4, Y(y0), B.fmt(v.metric, y0), "end");
  text(L, H - 5, `−${state.windowMin >= 120 ? `${state.windowMin / 60} h` : `${state.windowMin} min`}`);
  text(X(now), H - 5, "now", "middle");
  text(W - R, H - 5, `+${Math.round(horizon)} min`, "end");
  fig.append(el("figcaption", { text: headline + (u ? ` — UNCONFIRMED ${u.value}: re-measure` : "")
    + (v.baseline !== null ? `; usual ${B.fmt(v.metric, v.baseline)}` : "") }), svg);
  return fig;
}

// --- live stream: fetch() + ReadableStream, so the Authorization header can be sent (EventSource cannot) ---
async function stream() {
  while (state.token) {
    state.abort = new AbortController();
    try {
      const resp = await fetch("/api/stream", { headers: { Authorization: `Bearer ${state.token}` }, signal: state.abort.signal });
      if (resp.status === 401) { signOut("Your token was refused (unknown or revoked)."); return; }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      $("#live").className = "on"; $("#live").textContent = "live";
      await reloadAlerts();
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          let event = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          const doc = JSON.parse(data);
          if (event === "alert") applyEvent(doc);
          else if (event === "patients") {
            for (const p of doc) state.patients.set(p.patient_id, p);
            renderBoard(); renderAlerts();
          }
        }
      }
    } catch (e) { if (!state.token) return; }
    $("#live").className = "off"; $("#live").textContent = "reconnecting";
    await new Promise((r) => setTimeout(r, 3000));
  }
}

async function start() {
  $("#signin").hidden = true; $("#feed").hidden = false; $("#signout").hidden = false; $("#sound-label").hidden = false;
  try {
    const me = await api("/api/me");
    $("#who").textContent = `${me.user} · ${me.team}`;
    const patients = await api("/api/patients");
    state.patients = new Map(patients.map((p) => [p.patient_id, p]));
    renderBoard();
    reloadTrends().catch(() => {});
  } catch (e) { return; }
  route();
  stream();
}

$("#token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  $("#token").value = "";
  sessionStorage.setItem("twinmon-token", state.token);
  start();
});
$("#signout").addEventListener("click", () => signOut(""));
$("#sound").addEventListener("change", (ev) => {
  state.sound = ev.target.checked;
  if (state.sound) { state.audio = state.audio || new AudioContext(); beep(); } // a user gesture unlocks audio
});
$("#controls").addEventListener("input", renderBoard);
$("#controls").addEventListener("submit", (ev) => ev.preventDefault());
for (const b of document.querySelectorAll(".pv-window button")) {
  b.addEventListener("click", () => { state.windowMin = Number(b.dataset.window); renderPatient(); });
}
window.addEventListener("hashchange", route);
let resizing = null;
window.addEventListener("resize", () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => { if (state.selected) renderPatient(); }, 200);
});
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && state.selected) location.hash = "#/";
});
setInterval(() => {
  const now = Date.now();
  for (const e of document.querySelectorAll(".since")) e.textContent = B.ago(Number(e.dataset.since), now);
  for (const e of document.querySelectorAll(".ago[data-ago]")) {
    if (e.dataset.ago) e.textContent = B.agoPhrase(Number(e.dataset.ago), now);
  }
}, 1000);
setInterval(() => { if (state.token && !$("#feed").hidden) reloadAlerts().catch(() => {}); }, 20000);
setInterval(() => { if (state.token && !$("#feed").hidden) reloadTrends().catch(() => {}); }, 60000);
setInterval(() => { if (state.selected) loadPatient(state.selected, false); }, 15000);
if (state.token) start();
