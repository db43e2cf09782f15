// Small helpers shared by the pages: HTML templates that escape every value,
// formatting of the API's proto3 JSON (enum names, durations, timestamps).

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Text made safe for HTML content and attribute values. */
export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/** Markup that is trusted (built by `html`), not escaped again. */
export class Safe {
  constructor(text) {
    this.text = text;
  }
  toString() {
    return this.text;
  }
}

function part(value) {
  if (value instanceof Safe) return value.text;
  if (Array.isArray(value)) return value.map(part).join("");
  if (value === null || value === undefined || value === false) return "";
  return esc(value);
}

/** Tagged template: every interpolated value is escaped unless it is itself
 * the result of `html` (arrays of them are joined). */
export function html(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i += 1) out += part(values[i]) + strings[i + 1];
  return new Safe(out);
}

/** Put markup from `html` into an element. */
export function render(element, markup) {
  element.innerHTML = part(markup);
}

/** "runs/abc" -> "abc". */
export function shortId(name) {
  const text = String(name ?? "");
  return text.slice(text.lastIndexOf("/") + 1);
}

/** Link target of a resource name. */
export function href(name) {
  const text = String(name ?? "");
  const id = encodeURIComponent(shortId(text));
  if (text.startsWith("runs/")) return `#/runs/${id}`;
  if (text.startsWith("modelResults/")) return `#/models/${id}`;
  if (text.startsWith("experiments/")) return `#/experiments/${id}`;
  return "#/";
}

const ACRONYMS = { AUC: "AUC", ROC: "ROC", F1: "F1", RMSE: "RMSE", MAE: "MAE", R2: "R²", CSV: "CSV", XLSX: "XLSX", JSON: "JSON" };

/** "STOP_REASON_MAX_MODELS" -> "Max models" (the enum's prefix removed). */
export function enumLabel(name, prefix) {
  let text = String(name ?? "");
  if (prefix && text.startsWith(prefix)) text = text.slice(prefix.length);
  if (!text || text === "UNSPECIFIED") return "";
  const words = text.split("_").map((w) => ACRONYMS[w] || w.toLowerCase());
  words[0] = words[0].charAt(0).toUpperCase() + words[0].slice(1);
  return words.join(" ");
}

export const stateLabel = (state) => enumLabel(state, "RUN_STATE_");
export const reasonLabel = (reason) => enumLabel(reason, "STOP_REASON_");
export const taskLabel = (task) => enumLabel(task, "TASK_");
export const outcomeLabel = (outcome) => enumLabel(outcome, "OUTCOME_");

const METRICS = {
  METRIC_ACCURACY: "Accuracy",
  METRIC_BALANCED_ACCURACY: "Balanced accuracy",
  METRIC_F1_MACRO: "F1 (macro)",
  METRIC_ROC_AUC: "ROC AUC",
  METRIC_LOG_LOSS: "Log loss",
  METRIC_R2: "R²",
  METRIC_RMSE: "RMSE",
  METRIC_MAE: "MAE",
};
const LOSSES = new Set(["METRIC_LOG_LOSS", "METRIC_RMSE", "METRIC_MAE"]);

export function metricLabel(metric) {
  return METRICS[metric] || enumLabel(metric, "METRIC_");
}

/** Whether a higher value of the metric is better (losses are lower-better). */
export function higherIsBetter(metric) {
  return !LOSSES.has(metric);
}

export const TERMINAL = new Set(["RUN_STATE_SUCCEEDED", "RUN_STATE_STOPPED", "RUN_STATE_FAILED", "RUN_STATE_CANCELLED"]);

export function isTerminal(state) {
  return TERMINAL.has(state);
}

/** A score with 4 significant decimals; "—" when absent. */
export function fmtScore(value, digits = 4) {
  if (value === null || value === undefined || value === "" || Number.isNaN(Number(value))) return "—";
  const number = Number(value);
  if (number !== 0 && Math.abs(number) < 10 ** -digits) return number.toExponential(2);
  return number.toFixed(digits);
}

export function fmtInt(value) {
  return Number(value ?? 0).toLocaleString("en-US");
}

/** Seconds as "0.42 s", "12.3 s", "4 min 05 s", "2 h 03 min". */
export function fmtSeconds(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const s = Number(value);
  if (s < 1) return `${s.toFixed(2)} s`;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** A proto3 JSON Duration ("12.500s") in seconds; null when absent. */
export function parseDuration(text) {
  if (text === null || text === undefined || text === "") return null;
  const match = /^(-?\d+(?:\.\d+)?)s$/.exec(String(text));
  return match ? Number(match[1]) : null;
}

/** A proto3 JSON Timestamp in epoch milliseconds; null when absent. */
export function parseTime(text) {
  if (!text) return null;
  // Keep milliseconds: some engines refuse 6 or 9 fraction digits.
  const trimmed = String(text).replace(/(\.\d{3})\d+/, "$1");
  const ms = Date.parse(trimmed);
  return Number.isNaN(ms) ? null : ms;
}

export function fmtTime(text) {
  const ms = parseTime(text);
  if (ms === null) return "—";
  const date = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** "3 min ago" style age of a timestamp. */
export function fmtAge(text) {
  const ms = parseTime(text);
  if (ms === null) return "—";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** The metric summary of `metric` in a list of MetricSummary. */
export function metricOf(metrics, metric) {
  return (metrics || []).find((m) => m.metric === metric) || null;
}

/** A badge for a run state. */
export function stateBadge(state) {
  const kind = String(state || "").replace("RUN_STATE_", "").toLowerCase();
  return html`<span class="badge state-${kind}">${stateLabel(state) || "Unknown"}</span>`;
}

/** A progress bar; share in [0, 1] or null for an indeterminate one. */
export function progressBar(share, label, id = "") {
  const pct = share === null ? 0 : Math.max(0, Math.min(1, share)) * 100;
  return html`<div class="progress${share === null ? " indeterminate" : ""}" ${id ? html`id="${id}"` : ""} role="progressbar"
    aria-valuemin="0" aria-valuemax="100" aria-valuenow="${pct.toFixed(0)}">
    <div class="bar" style="width: ${pct.toFixed(1)}%"></div><span class="label">${label}</span></div>`;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A function that runs `fn` at most once per animation frame. */
export function perFrame(fn) {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      fn();
    });
  };
}
