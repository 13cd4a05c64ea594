// twinmon care-team feed: vanilla JS, no build step, no network beyond this server.
"use strict";

const state = { token: sessionStorage.getItem("twinmon-token"), alerts: new Map(), patients: new Map(),
  selected: null, seen: {} };
window.__twinmonSeen = state.seen; // alert id -> Date.now() when it first appeared on the page (for tests)
const $ = (sel) => document.querySelector(sel);

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
  $("#feed").hidden = true; $("#signin").hidden = false; $("#signout").hidden = true; $("#who").textContent = "";
  $("#signin-error").textContent = message || "";
  if (state.abort) state.abort.abort();
}

function ago(ms) {
  const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${String(r).padStart(2, "0")}s` : `${r}s`;
}

// --- alerts ---
const LEVELS = { high: 3, medium: 2, low: 1 };

function renderAlerts() {
  const list = [...state.alerts.values()].sort((a, b) =>
    (LEVELS[b.level] - LEVELS[a.level]) || (b.raised_at - a.raised_at));
  const ul = $("#alerts");
  ul.replaceChildren(...list.map(alertItem));
  $("#alert-count").textContent = `(${list.length})`;
  for (const a of list) if (!(a.alert_id in state.seen)) state.seen[a.alert_id] = Date.now();
}

function alertItem(a) {
  const li = document.createElement("li");
  li.className = `alert level-${a.level}`;
  li.dataset.alertId = a.alert_id;
  li.dataset.state = a.acknowledged_by ? "acknowledged" : "open";
  const who = a.acknowledged_by ? `acknowledged by ${a.acknowledged_by}` : "not acknowledged";
  li.innerHTML = `<strong class="level"></strong><span class="patient"></span><span class="cond"></span>
    <span class="who"></span><span class="since" data-since="${a.raised_at}">${ago(a.raised_at)}</span>`;
  li.querySelector(".level").textContent = a.level.toUpperCase();
  li.querySelector(".patient").textContent = a.patient_id;
  li.querySelector(".cond").textContent = a.condition.replace("_", " ");
  li.querySelector(".who").textContent = who;
  li.querySelector(".patient").addEventListener("click", () => selectPatient(a.patient_id));
  if (!a.acknowledged_by) {
    const ack = document.createElement("button");
    ack.className = "ack"; ack.textContent = "Acknowledge";
    ack.addEventListener("click", () => act(a, "acknowledge", null, ack));
    li.append(ack);
  }
  const reason = document.createElement("input");
  reason.className = "reason"; reason.placeholder = "reason to resolve";
  const resolve = document.createElement("button");
  resolve.className = "resolve"; resolve.textContent = "Resolve";
  resolve.addEventListener("click", () => {
    if (!reason.value.trim()) { reason.focus(); reason.placeholder = "a reason is required"; return; }
    act(a, "resolve", reason.value.trim(), resolve);
  });
  li.append(reason, resolve);
  return li;
}

async function act(a, action, reason, button) {
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
    alert_id: e.alert_id, patient_id: e.patient_id, condition: e.condition, level: e.level, escalated_at: e.at,
    touched: Date.now() });
  if (state.alerts.has(e.alert_id)) state.alerts.get(e.alert_id).touched = Date.now();
  renderAlerts();
  if (state.selected === e.patient_id) selectPatient(e.patient_id);
}

async function reloadAlerts() {
  const fresh = await api("/api/alerts");
  const next = new Map(fresh.map((a) => [a.alert_id, a]));
  // An event newer than the stored state (the worker writes Redis just after publishing) wins for 10 s.
  for (const [id, a] of state.alerts) if (a.touched && Date.now() - a.touched < 10000 && !next.has(id)) next.set(id, a);
  state.alerts = next;
  renderAlerts();
}

// --- patients ---
const pct = (p) => (p === null || p === undefined ? "–" : `${Math.round(p * 100)}%`);

function renderPatients() {
  const rows = [...state.patients.values()].sort((a, b) =>
    ((b.p_news2_7_60min || 0) - (a.p_news2_7_60min || 0)) || ((b.p_news2_5_60min || 0) - (a.p_news2_5_60min || 0))
    || ((b.news2?.total ?? -1) - (a.news2?.total ?? -1)) || a.patient_id.localeCompare(b.patient_id));
  $("#patients tbody").replaceChildren(...rows.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.patientId = p.patient_id;
    // An incomplete score shows its band in words, never a bare number that reads as "low".
    const cells = [p.patient_id, p.news2 ? `${p.news2.total}${p.news2.partial ? "*" : ""} ${p.news2.band}` : "–",
      pct(p.p_news2_5_60min), pct(p.p_news2_7_60min), pct(p.data_quality), p.stale.join(", ") || "–",
      p.open_alerts ? `${p.open_alerts} (${p.highest_alert})` : "–"];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
    if (p.news2) {
      tr.children[1].className = `band-${p.news2.band}`;
      tr.children[1].title = news2Notes(p.news2);
    }
    tr.addEventListener("click", () => selectPatient(p.patient_id));
    return tr;
  }));
}

function news2Notes(n) {
  const notes = [];
  if (n.missing.length) notes.push(`missing: ${n.missing.join(", ")}`);
  if (n.assumed.length) notes.push(`assumed: ${n.assumed.join(", ")}`);
  return notes.join("; ");
}

async function selectPatient(pid) {
  state.selected = pid;
  let d;
  try { d = await api(`/api/patients/${encodeURIComponent(pid)}`); } catch (e) { return; }
  $("#patient-view").hidden = false;
  const n = d.summary.news2;
  $("#pv-title").textContent = `${pid} — NEWS2 ${n ? `${n.total} ${n.band}` : "–"}`;
  const sub = d.summary.news2 ? Object.entries(d.summary.news2.subscores).map(([k, v]) => `${k} ${v}`).join(", ") : "";
  $("#pv-meta").textContent = `age ${d.age_band || "?"}; conditions ${d.conditions.join(", ") || "none"}; ` +
    `subscores: ${sub}` + (n && news2Notes(n) ? `; ${news2Notes(n)}` : "");
  $("#pv-charts").replaceChildren(...d.vitals.map((v) => chart(v, d.history.filter((h) => h.metric === v.metric))));
}

// One SVG per vital: raw readings (dots), filtered estimate (line) with its 95% band, forecast cone ahead.
function chart(v, hist) {
  const W = 560, H = 150, L = 44, R = 8, T = 16, B = 18;
  const now = Date.now();
  const t0 = hist.length ? Math.min(hist[0].at, now - 30 * 60000) : now - 30 * 60000;
  const t1 = now + 60 * 60000;
  const ys = [];
  for (const h of hist) ys.push(h.raw, h.estimate - 1.96 * h.sd, h.estimate + 1.96 * h.sd);
  for (const f of v.forecast) ys.push(f.low95, f.high95);
  ys.push(v.low95, v.high95);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (y1 - y0 < 1e-6) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`); svg.setAttribute("width", W); svg.setAttribute("class", "chart");
  svg.dataset.metric = v.metric;
  const add = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); svg.append(e); return e; };
  const path = (pts) => pts.map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
  if (hist.length) {
    const up = hist.map((h) => [h.at, h.estimate + 1.96 * h.sd]), down = hist.map((h) => [h.at, h.estimate - 1.96 * h.sd]).reverse();
    add("path", { d: path([...up, ...down]) + "Z", fill: "#4c8bf5", "fill-opacity": 0.18, stroke: "none", class: "band" });
    add("path", { d: path(hist.map((h) => [h.at, h.estimate])), fill: "none", stroke: "#1f5fd1", "stroke-width": 1.6, class: "estimate" });
    for (const h of hist) add("circle", { cx: X(h.at).toFixed(1), cy: Y(h.raw).toFixed(1), r: 1.8, fill: "#333", class: "raw" });
  }
  const cone = v.forecast.map((f) => [now + f.minutes * 60000, f]);
  add("path", { d: path([...cone.map(([t, f]) => [t, f.high95]), ...cone.map(([t, f]) => [t, f.low95]).reverse()]) + "Z",
    fill: "#e36209", "fill-opacity": 0.15, stroke: "none", class: "cone" });
  add("path", { d: path(cone.map(([t, f]) => [t, f.mean])), fill: "none", stroke: "#e36209", "stroke-dasharray": "4 3", class: "forecast" });
  add("line", { x1: X(now), x2: X(now), y1: T, y2: H - B, stroke: "#999", "stroke-dasharray": "2 2" });
  for (const y of [y0 + pad, y1 - pad]) { const t = add("text", { x: 2, y: Y(y) + 4 }); t.textContent = y.toFixed(1); }
  const u = v.unconfirmed;
  if (u) add("circle", { cx: X(u.measured_at).toFixed(1), cy: Y(Math.min(Math.max(u.value, y0), y1)).toFixed(1), r: 3.5,
    fill: "none", stroke: "#b00020", "stroke-width": 1.6, class: "unconfirmed" });
  const title = add("text", { x: L, y: 12 });
  title.textContent = `${v.metric} (${v.unit}) now ${v.estimate.toFixed(1)} ± ${(1.96 * v.sd).toFixed(1)}, last raw ${v.last_raw}` +
    `${v.baseline !== null ? `, baseline ${v.baseline.toFixed(1)}` : ""}${v.stale ? " — STALE" : ""}` +
    `${u ? ` — UNCONFIRMED ${u.value}${u.news2_subscore !== null ? ` (scores ${u.news2_subscore})` : ""}: re-measure` : ""}`;
  const xl = add("text", { x: X(now) + 3, y: H - 4 }); xl.textContent = "now → forecast 60 min";
  return svg;
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
          else if (event === "patients") { for (const p of doc) state.patients.set(p.patient_id, p); renderPatients(); }
        }
      }
    } catch (e) { if (!state.token) return; }
    $("#live").className = "off"; $("#live").textContent = "reconnecting";
    await new Promise((r) => setTimeout(r, 3000));
  }
}

async function start() {
  $("#signin").hidden = true; $("#feed").hidden = false; $("#signout").hidden = false;
  try {
    const me = await api("/api/me");
    $("#who").textContent = `${me.user} · ${me.team}`;
    const patients = await api("/api/patients");
    state.patients = new Map(patients.map((p) => [p.patient_id, p]));
    renderPatients();
  } catch (e) { return; }
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
setInterval(() => { for (const el of document.querySelectorAll(".since")) el.textContent = ago(Number(el.dataset.since)); }, 1000);
setInterval(() => { if (state.token && !$("#feed").hidden) reloadAlerts().catch(() => {}); }, 20000);
if (state.token) start();
