// The ward board's logic (feed/static/board.js) under Node's own test runner: `node --test tests/js`.
"use strict";

const test = require("node:test");
const assert = require("node:assert/strict");
const B = require("../../feed/static/board.js");

const NOW = Date.UTC(2026, 11, 7, 14, 30, 0);
const MIN = 60_000;

function summary(overrides = {}) {
  return {
    patient_id: "sim-000012",
    news2: { total: 7, subscores: { rr: 3, spo2: 2, sbp: 0, pulse: 2, temp: 0, acvpu: 0, on_oxygen: 0 },
      red_flag: true, band: "high", partial: false, missing: [], assumed: ["consciousness alert", "air"] },
    p_news2_5_60min: 0.97, p_news2_7_60min: 0.81, data_quality: 0.93, stale: [], unconfirmed: {},
    last_reading_at: NOW - 20_000, open_alerts: 1, highest_alert: "high",
    vitals: {
      resp_rate: { estimate: 27.4, unit: "/min", trend_per_min: 0.08, last_raw_at: NOW - 20_000, stale: false,
        data_quality: 0.95, news2_subscore: 3 },
      spo2: { estimate: 92.6, unit: "%", trend_per_min: -0.05, last_raw_at: NOW - 30_000, stale: false,
        data_quality: 0.9, news2_subscore: 2 },
      heart_rate: { estimate: 118.2, unit: "/min", trend_per_min: 0.01, last_raw_at: NOW - 5_000, stale: false,
        data_quality: 0.92, news2_subscore: 2 },
    },
    ...overrides,
  };
}

test("a score with parameters missing reads as a lower bound, and says what is missing", () => {
  const n = { total: 3, subscores: { rr: 3 }, red_flag: true, band: "incomplete", partial: true,
    missing: ["spo2", "sbp"], assumed: [] };
  assert.equal(B.scoreText(n), "≥3");
  assert.equal(B.bandLabel(n), "NEWS2 ≥3 incomplete, missing SpO2, SBP");
  assert.equal(B.bandLabel(null), "no data");
  assert.equal(B.band(summary({ news2: null })), "none");
});

test("trend arrows need more than one reading's noise per hour", () => {
  assert.equal(B.arrow("resp_rate", 0.05), "↑"); // 3 per hour
  assert.equal(B.arrow("resp_rate", 0.02), "→"); // 1.2 per hour
  assert.equal(B.arrow("spo2", -0.05), "↓");
  assert.equal(B.arrow("temperature", 0.004), "→");
  assert.equal(B.arrowWord("↓"), "falling");
});

test("ages tick in words, and a time ahead of the clock never reads as negative", () => {
  assert.equal(B.ago(NOW - 2_000, NOW), "just now");
  assert.equal(B.ago(NOW - 45_000, NOW), "45 s");
  assert.equal(B.ago(NOW - 12 * MIN - 5_000, NOW), "12 min");
  assert.equal(B.ago(NOW - 185 * MIN, NOW), "3 h 05 min");
  assert.equal(B.ago(NOW - 50 * 60 * MIN, NOW), "2 d 2 h");
  assert.equal(B.ago(NOW + 84 * MIN, NOW), "just now");
  assert.equal(B.ago(null, NOW), "never");
  assert.equal(B.agoPhrase(NOW - 45_000, NOW), "45 s ago");
  assert.equal(B.agoPhrase(NOW - 1_000, NOW), "just now");
  assert.equal(B.agoPhrase(null, NOW), "never");
});

test("an alert says why in one line: score, the vitals driving it with value and direction, since when", () => {
  const alert = { alert_id: "a1", condition: "clinical", level: "high", raised_at: NOW - 12 * MIN };
  const why = B.alertWhy(alert, summary(), NOW);
  assert.match(why, /^NEWS2 7 high: RR 27 ↑, HR 118 →, SpO2 93 ↓ · since \d\d:\d\d \(12 min\)$/);
  // Predicted, not yet reached: the probability is part of why.
  const rising = summary({ news2: { ...summary().news2, total: 5, band: "medium" }, p_news2_7_60min: 0.42 });
  assert.match(B.alertWhy(alert, rising, NOW), /^NEWS2 5 medium, P\(≥7 in 1 h\) 42%: /);
  const quiet = { ...alert, condition: "no_data" };
  assert.match(B.alertWhy(quiet, summary({ last_reading_at: NOW - 20 * MIN }), NOW), /^No readings since \d\d:\d\d: check/);
  const remeasure = { ...alert, condition: "unconfirmed" };
  assert.match(B.alertWhy(remeasure, summary({ unconfirmed: { spo2: 3 } }), NOW), /re-measure/);
  assert.match(B.alertWhy(remeasure, summary({ unconfirmed: { spo2: 3 } }), NOW), /SpO2 scores 3/);
});

test("stale and poor-signal vitals are told apart from a patient with no data at all", () => {
  const s = summary({ stale: ["spo2"] });
  s.vitals.heart_rate.data_quality = 0.4;
  assert.deepEqual(B.dataState(s), { noData: false, stale: ["spo2"], poorSignal: ["heart_rate"] });
  assert.equal(B.dataState(summary({ last_reading_at: null })).noData, true);
});

test("the board sorts by risk (band before score), by alerts, by id or by silence, and filters", () => {
  const a = summary({ patient_id: "sim-000002" });
  const b = summary({ patient_id: "sim-000010", news2: { ...a.news2, total: 5, band: "medium" }, open_alerts: 0,
    highest_alert: null, last_reading_at: NOW - 40 * MIN });
  const c = summary({ patient_id: "sim-000001", news2: { ...a.news2, total: 3, band: "incomplete", partial: true,
    missing: ["sbp"] }, open_alerts: 0, highest_alert: null });
  const d = summary({ patient_id: "sim-000003", news2: null, last_reading_at: null, open_alerts: 0, highest_alert: null });
  const all = [d, c, b, a];
  const ids = (xs) => xs.map((x) => x.patient_id);
  assert.deepEqual(ids(B.arrange(all)), ["sim-000002", "sim-000010", "sim-000001", "sim-000003"]);
  assert.deepEqual(ids(B.arrange(all, { sort: "id" })), ["sim-000001", "sim-000002", "sim-000003", "sim-000010"]);
  assert.deepEqual(ids(B.arrange(all, { sort: "quiet" })), ["sim-000003", "sim-000010", "sim-000001", "sim-000002"]);
  assert.deepEqual(ids(B.arrange(all, { alertsOnly: true })), ["sim-000002"]);
  assert.deepEqual(ids(B.arrange(all, { bandFilter: "incomplete" })), ["sim-000001"]);
  assert.deepEqual(ids(B.arrange(all, { text: "00001" })), ["sim-000010", "sim-000001"]);
  assert.deepEqual(ids(B.arrange(all, { dataProblems: true })), ["sim-000003"]);
});

test("only alerts new at high level call for attention", () => {
  const known = new Map([["a1", "high"], ["a2", "medium"]]);
  const alerts = [{ alert_id: "a1", level: "high" }, { alert_id: "a2", level: "high" }, { alert_id: "a3", level: "high" },
    { alert_id: "a4", level: "medium" }];
  assert.deepEqual(B.newHigh(alerts, known).map((a) => a.alert_id), ["a2", "a3"]);
});

test("sparklines break over gaps and stay inside their box", () => {
  const pts = [[0, 10], [10, 20], [100, 30]];
  assert.equal(B.sparkPath(pts, 0, 100, 10, 30, 100, 20, 50), "M0.0,20.0L10.0,10.0M100.0,0.0");
  assert.equal(B.sparkPath([[50, 999]], 0, 100, 0, 10, 100, 20), "M50.0,0.0");
  assert.equal(B.sparkPath([], 0, 1, 0, 1, 1, 1), "");
});

test("a chart's range holds its data, has a useful minimum span and never leaves what is possible", () => {
  assert.deepEqual(B.extent([0, 2], [0, 400], 40).map(Math.round), [0, 24]);
  const [lo, hi] = B.extent([97, 98, 99], [0, 100], 6);
  assert.ok(lo < 97 && hi === 100);
  assert.deepEqual(B.extent([], [20, 46], 1), [20, 46]);
  assert.equal(B.forecastMinutes(60), 20);
  assert.equal(B.forecastMinutes(24 * 60), 60);
});

test("the alert timeline says who acknowledged and who resolved, oldest first", () => {
  const t0 = NOW - 30 * MIN;
  const lines = B.timeline([
    { event_id: "3", kind: "resolved", at: t0 + 20 * MIN, user: "nurse-a", reason: "reviewed", level: "high",
      condition: "clinical" },
    { event_id: "1", kind: "raised", at: t0, level: "high", condition: "clinical", reason: "NEWS2 7" },
    { event_id: "2", kind: "acknowledged", at: t0 + 3 * MIN, user: "nurse-a", level: "high", condition: "clinical" },
  ]).map((l) => l.text.replace(/^\d\d:\d\d /, ""));
  assert.deepEqual(lines, ["raised HIGH clinical: NEWS2 7", "acknowledged by nurse-a", "resolved by nurse-a: reviewed"]);
});

test("the profile says what is not recorded instead of a question mark", () => {
  const text = B.profileText({ age_band: null, conditions: [], targets: {}, spo2_scale: 1 });
  assert.equal(text, "Age not recorded · No conditions recorded · SpO2 scale 1 · No individual targets");
  assert.doesNotMatch(text, /\?/);
  const full = B.profileText({ age_band: "65-79", conditions: ["hypercapnic_respiratory_failure"],
    targets: { spo2: [88, 92] }, spo2_scale: 2 });
  assert.equal(full, "Age 65-79 · Conditions: hypercapnic respiratory failure · SpO2 scale 2 · Targets: SpO2 88–92");
});

test("units read as a ward writes them", () => {
  assert.equal(B.unit("Cel"), "°C");
  assert.equal(B.unit("mm[Hg]"), "mmHg");
  assert.equal(B.unit("/min"), "/min");
  assert.equal(B.unit("{steps}/min"), "steps/min");
});
