// twinmon ward board: what the page computes from the API's answers, with no DOM and no clock of its own (every
// function that needs the time is given it), so that `node --test tests/js` checks it as the browser runs it.
"use strict";

(function (root, factory) {
  const board = factory();
  if (typeof module === "object" && module.exports) module.exports = board;
  else root.TwinmonBoard = board;
})(typeof self !== "undefined" ? self : this, function () {
  // The vitals NEWS2 scores, in the chart's order, with the short names a ward uses.
  const VITALS = [
    { metric: "resp_rate", label: "RR", digits: 0 },
    { metric: "spo2", label: "SpO2", digits: 0 },
    { metric: "bp_systolic", label: "SBP", digits: 0 },
    { metric: "heart_rate", label: "HR", digits: 0 },
    { metric: "temperature", label: "Temp", digits: 1 },
  ];
  const EXTRA = [{ metric: "bp_diastolic", label: "DBP", digits: 0 }, { metric: "activity", label: "Activity", digits: 0 }];
  const LABEL = Object.fromEntries([...VITALS, ...EXTRA].map((v) => [v.metric, v]));
  // A change per hour below which a vital is "steady" (about what one reading's noise moves an estimate).
  const STEADY_PER_HOUR = { resp_rate: 2, spo2: 1, bp_systolic: 8, heart_rate: 6, temperature: 0.3, bp_diastolic: 6,
    activity: 30 };
  const BAND_RANK = { high: 5, medium: 4, "low-medium": 3, low: 2, incomplete: 1, none: 0 };
  const BAND_TEXT = { high: "high", medium: "medium", "low-medium": "low-medium", low: "low", incomplete: "incomplete",
    none: "no data" };
  const LEVEL_RANK = { high: 3, medium: 2, low: 1 };
  const POOR_SIGNAL = 0.7; // share of valid readings below which the signal is poor (motion, loose probe)

  function label(metric) { return (LABEL[metric] || { label: metric }).label; }

  // UCUM as the API gives it, as a ward writes it.
  const UNITS = { Cel: "°C", "mm[Hg]": "mmHg", "{steps}/min": "steps/min", "/min": "/min", "%": "%" };
  function unit(u) { return UNITS[u] ?? u; }

  function fmt(metric, value) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "–";
    return value.toFixed((LABEL[metric] || { digits: 1 }).digits);
  }

  /** The RCP response band of a summary, or "none" without a twin. An incomplete score is its own state. */
  function band(summary) { return summary && summary.news2 ? summary.news2.band : "none"; }

  /** NEWS2 as a person reads it: "7", or "≥3" when parameters are missing (the score can only be higher). */
  function scoreText(news2) {
    if (!news2) return "–";
    return `${news2.partial ? "≥" : ""}${news2.total}`;
  }

  function bandLabel(news2) {
    if (!news2) return "no data";
    const missing = news2.missing.length ? `, missing ${news2.missing.map(paramLabel).join(", ")}` : "";
    return `NEWS2 ${scoreText(news2)} ${BAND_TEXT[news2.band]}${missing}`;
  }

  const PARAMS = { rr: "RR", spo2: "SpO2", sbp: "SBP", pulse: "HR", temp: "Temp", acvpu: "ACVPU", on_oxygen: "O2" };
  const PARAM_METRIC = { rr: "resp_rate", spo2: "spo2", sbp: "bp_systolic", pulse: "heart_rate", temp: "temperature" };
  function paramLabel(p) { return PARAMS[p] || p; }

  /** "↑", "↓" or "→": which way a vital is going, per hour, against what counts as steady for it. */
  function arrow(metric, trendPerMin) {
    const perHour = (trendPerMin || 0) * 60;
    const steady = STEADY_PER_HOUR[metric] ?? 1;
    if (perHour > steady) return "↑";
    if (perHour < -steady) return "↓";
    return "→";
  }

  function arrowWord(a) { return a === "↑" ? "rising" : a === "↓" ? "falling" : "steady"; }

  /** "just now", "45 s", "12 min", "3 h 05 min", "2 d 4 h": how long since ``ms``; a time ahead reads "just now". */
  function ago(ms, now) {
    if (ms === null || ms === undefined) return "never";
    const s = Math.floor((now - ms) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return `${s} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  /** "just now", "45 s ago", "12 min ago", "never": ``ago`` as the end of a sentence. */
  function agoPhrase(ms, now) {
    const a = ago(ms, now);
    return a === "just now" || a === "never" ? a : `${a} ago`;
  }

  function clock(ms) {
    const d = new Date(ms);
    return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  }

  /** What is wrong with the data of a patient, at a glance: stale vitals, poor signal, nothing at all. */
  function dataState(summary) {
    if (!summary || summary.last_reading_at === null || summary.last_reading_at === undefined) {
      return { noData: true, stale: [], poorSignal: [] };
    }
    const vitals = summary.vitals || {};
    const poorSignal = Object.keys(vitals).filter((m) => vitals[m].data_quality !== null
      && vitals[m].data_quality < POOR_SIGNAL && !vitals[m].stale);
    return { noData: false, stale: summary.stale || [], poorSignal };
  }

  /** The vitals that drive a NEWS2 score, worst first: those scoring 1 or more, with value and direction. */
  function drivers(summary) {
    if (!summary || !summary.news2) return [];
    const out = [];
    for (const [param, sub] of Object.entries(summary.news2.subscores)) {
      if (sub <= 0) continue;
      const metric = PARAM_METRIC[param];
      const v = metric ? (summary.vitals || {})[metric] : undefined;
      out.push({ param, metric, subscore: sub, label: paramLabel(param), value: v ? v.estimate : null,
        arrow: v ? arrow(metric, v.trend_per_min) : "" });
    }
    return out.sort((a, b) => b.subscore - a.subscore || a.label.localeCompare(b.label));
  }

  function driverText(d) {
    return d.value === null ? `${d.label} scores ${d.subscore}` : `${d.label} ${fmt(d.metric, d.value)} ${d.arrow}`;
  }

  /** Why an alert is open, in one line a nurse reads before walking to the bed. */
  function alertWhy(alert, summary, now) {
    const since = `since ${clock(alert.raised_at)} (${ago(alert.raised_at, now)})`;
    const cond = alert.condition;
    if (cond === "no_data") {
      const last = summary && summary.last_reading_at;
      return `No readings ${last ? `since ${clock(last)}` : "yet"}: check the sensors · ${since}`;
    }
    if (cond === "signal_quality") {
      const poor = dataState(summary).poorSignal.map(label);
      return `Poor signal${poor.length ? ` on ${poor.join(", ")}` : ""}: check the sensors · ${since}`;
    }
    if (cond === "unconfirmed") {
      const u = Object.entries((summary && summary.unconfirmed) || {}).map(([p, s]) => `${paramLabel(p)} scores ${s}`);
      return `Unconfirmed reading${u.length ? ` (${u.join(", ")})` : ""}: re-measure · ${since}`;
    }
    if (!summary || !summary.news2) return `Clinical alert · ${since}`;
    const n = summary.news2;
    const ds = drivers(summary).slice(0, 4).map(driverText);
    const missing = n.missing.length ? ` (missing ${n.missing.map(paramLabel).join(", ")})` : "";
    const p7 = summary.p_news2_7_60min;
    const predicted = n.total < 7 && p7 !== null && p7 >= 0.3 ? `, P(≥7 in 1 h) ${Math.round(p7 * 100)}%` : "";
    return `NEWS2 ${scoreText(n)} ${BAND_TEXT[n.band]}${missing}${predicted}${ds.length ? `: ${ds.join(", ")}` : ""}`
      + ` · ${since}`;
  }

  const SORTS = {
    risk: (a, b) => (BAND_RANK[band(b)] - BAND_RANK[band(a)]) || ((b.news2?.total ?? -1) - (a.news2?.total ?? -1))
      || ((b.p_news2_7_60min || 0) - (a.p_news2_7_60min || 0)) || ((b.p_news2_5_60min || 0) - (a.p_news2_5_60min || 0))
      || a.patient_id.localeCompare(b.patient_id),
    alerts: (a, b) => ((LEVEL_RANK[b.highest_alert] || 0) - (LEVEL_RANK[a.highest_alert] || 0))
      || (b.open_alerts - a.open_alerts) || SORTS.risk(a, b),
    id: (a, b) => a.patient_id.localeCompare(b.patient_id, undefined, { numeric: true }),
    // Oldest last reading first: the patients nobody has heard from lately.
    quiet: (a, b) => (a.last_reading_at ?? -Infinity) - (b.last_reading_at ?? -Infinity)
      || a.patient_id.localeCompare(b.patient_id),
  };

  /** The board's patients, filtered and sorted as the controls say. */
  function arrange(summaries, { sort = "risk", text = "", bandFilter = "all", alertsOnly = false,
    dataProblems = false } = {}) {
    const needle = text.trim().toLowerCase();
    const kept = summaries.filter((s) => {
      if (needle && !s.patient_id.toLowerCase().includes(needle)) return false;
      if (bandFilter !== "all" && band(s) !== bandFilter) return false;
      if (alertsOnly && !s.open_alerts) return false;
      if (dataProblems) {
        const d = dataState(s);
        if (!d.noData && !d.stale.length && !d.poorSignal.length) return false;
      }
      return true;
    });
    return kept.sort(SORTS[sort] || SORTS.risk);
  }

  /** Alerts newly seen at high level (raised high, or escalated to it) since ``known`` (id -> level). */
  function newHigh(alerts, known) {
    return alerts.filter((a) => a.level === "high" && known.get(a.alert_id) !== "high");
  }

  /** An SVG path of (t, value) points over [t0, t1] x [lo, hi] in a w x h box; a gap longer than ``gapMs``
   * breaks the line rather than drawing through a time without data. */
  function sparkPath(points, t0, t1, lo, hi, w, h, gapMs = Infinity) {
    if (!points.length) return "";
    const span = hi - lo || 1;
    let d = "";
    let prev = null;
    for (const [t, v] of points) {
      const x = ((t - t0) / (t1 - t0)) * w;
      const y = h - ((Math.min(Math.max(v, lo), hi) - lo) / span) * h;
      d += `${prev === null || t - prev > gapMs ? "M" : "L"}${x.toFixed(1)},${y.toFixed(1)}`;
      prev = t;
    }
    return d;
  }

  /** A value range that holds every number given, padded, never wider than what is possible. */
  function extent(values, possible, minSpan) {
    const finite = values.filter(Number.isFinite);
    if (!finite.length) return possible ? [...possible] : [0, 1];
    let lo = Math.min(...finite), hi = Math.max(...finite);
    if (hi - lo < minSpan) { const mid = (lo + hi) / 2; lo = mid - minSpan / 2; hi = mid + minSpan / 2; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    if (possible) { lo = Math.max(lo, possible[0]); hi = Math.min(hi, possible[1]); }
    return [lo, hi];
  }

  const MIN_SPAN = { resp_rate: 8, spo2: 6, bp_systolic: 30, heart_rate: 30, temperature: 1.5, bp_diastolic: 20,
    activity: 40 };

  /** How much forecast a chart of ``windowMin`` minutes of history shows: a third of the history, up to an hour,
   * so the history, not the cone, fills the chart. */
  function forecastMinutes(windowMin) { return Math.min(60, windowMin / 3); }

  /** One alert's lifecycle events, oldest first, as lines: "14:02 raised HIGH: NEWS2 7 ...",
   * "14:05 acknowledged by nurse-a", "14:20 resolved by nurse-a: reviewed at the bedside". */
  function timeline(events) {
    return [...events].sort((a, b) => a.at - b.at || a.event_id.localeCompare(b.event_id)).map((e) => {
      const head = `${clock(e.at)} ${e.kind}`;
      if (e.kind === "acknowledged") return { at: e.at, kind: e.kind, text: `${head} by ${e.user || "someone"}` };
      if (e.kind === "resolved") {
        return { at: e.at, kind: e.kind, text: `${head}${e.user ? ` by ${e.user}` : ""}${e.reason ? `: ${e.reason}` : ""}` };
      }
      return { at: e.at, kind: e.kind, text: `${head} ${e.level.toUpperCase()} ${e.condition.replace("_", " ")}`
        + `${e.reason ? `: ${e.reason}` : ""}` };
    });
  }

  const CONDITIONS = { hypercapnic_respiratory_failure: "hypercapnic respiratory failure" };

  /** The profile line of the patient view; says what is not recorded instead of printing "?". */
  function profileText(detail) {
    const parts = [detail.age_band ? `Age ${detail.age_band}` : "Age not recorded"];
    parts.push(detail.conditions.length ? `Conditions: ${detail.conditions.map((c) => CONDITIONS[c] || c.replaceAll("_", " ")).join(", ")}`
      : "No conditions recorded");
    parts.push(`SpO2 scale ${detail.spo2_scale || 1}`);
    const targets = Object.entries(detail.targets || {});
    parts.push(targets.length ? `Targets: ${targets.map(([m, [lo, hi]]) => `${label(m)} ${lo}–${hi}`).join(", ")}`
      : "No individual targets");
    return parts.join(" · ");
  }

  return { VITALS, EXTRA, BAND_TEXT, MIN_SPAN, label, fmt, band, scoreText, bandLabel, arrow, arrowWord, ago, agoPhrase, clock, unit,
    dataState, drivers, driverText, alertWhy, arrange, newHigh, sparkPath, extent, forecastMinutes, timeline,
    profileText, paramLabel };
});
