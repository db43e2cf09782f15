// The HTTP/JSON API under /v1/ (proto3 JSON mapping), with the API key kept in
// localStorage and sent as "Authorization: Bearer <key>" on every call.

import { isTerminal, sleep } from "./util.js";

const KEY = "automl.dashboard.apiKey";

export function apiKey() {
  try {
    return localStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY, key);
  else localStorage.removeItem(KEY);
}

/** An error answered by the API: its HTTP status and google.rpc.Status. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.error = error;
  }

  /** The request id of the failed call, when the server gave one. */
  get requestId() {
    for (const detail of this.error.details || []) if (detail.requestId) return detail.requestId;
    return "";
  }

  /** Field violations of an INVALID_ARGUMENT, as "field: description" lines. */
  get violations() {
    const out = [];
    for (const detail of this.error.details || []) {
      for (const v of detail.fieldViolations || []) out.push(`${v.field}: ${v.description}`);
    }
    return out;
  }
}

const listeners = new Set();

/** Call `fn` when a call answers 401 (no key, or a wrong one). */
export function onUnauthorized(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function unauthorized(error) {
  for (const fn of listeners) fn(error);
}

export function authHeaders(extra = {}) {
  const headers = { ...extra };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.append(name, String(value));
  }
  const text = params.toString();
  return `/v1/${path}${text ? `?${text}` : ""}`;
}

/** The ApiError of an answer read elsewhere (a worker); a 401 asks for a key. */
export function answerError(status, body) {
  const error = new ApiError(status, body);
  if (status === 401) unauthorized(error);
  return error;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = new ApiError(response.status, body);
  if (response.status === 401) unauthorized(error);
  return error;
}

/** One unary call; resolves to the answer's JSON. */
export async function call(method, path, { query, body, signal } = {}) {
  const headers = authHeaders(body === undefined ? {} : { "Content-Type": "application/json" });
  const response = await fetch(url(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

export const get = (path, query, options = {}) => call("GET", path, { ...options, query });
export const post = (path, body = {}, options = {}) => call("POST", path, { ...options, body });

/** Every page of a List call: `field` of each answer, concatenated.
 * `onPage(items, answer)` sees each page as it arrives. */
export async function getAll(path, field, query = {}, { pageSize = 1000, signal, onPage } = {}) {
  const out = [];
  let token = "";
  let first = null;
  do {
    const answer = await get(path, { ...query, pageSize, pageToken: token }, { signal });
    first = first || answer;
    const items = answer[field] || [];
    for (const item of items) out.push(item);
    if (onPage) onPage(items, answer);
    token = answer.nextPageToken || "";
  } while (token);
  return { items: out, first };
}

/** The link of an export file (works as a plain link when no key is needed). */
export function exportUrl(run, format) {
  return url(`${run}:export`, { format });
}

/** Download a file with the key in the header: fetched as a blob, then saved
 * under the name the server gives. */
export async function download(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) throw await failure(response);
  const disposition = response.headers.get("content-disposition") || "";
  const match = /filename="?([^";]+)"?/.exec(disposition);
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = match ? match[1] : path.split("/").pop().split("?")[0];
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

const FATAL = new Set([400, 401, 403, 404]);

/**
 * Follow a run: GET /v1/{run}:watch?afterSequence=N as newline-delimited JSON
 * (a snapshot, then batches of events, heartbeats while idle). The stream ends
 * after RUN_FINISHED; a dropped or silent stream is resumed after the last
 * sequence seen, so no event is missed or seen twice.
 *
 * handlers: snapshot(snapshot), events(list), status("connecting" | "live" |
 * "reconnecting" | "ended" | "error", detail).
 * Returns { close() }.
 */
export function watchRun(run, handlers, { silenceMs = 45000 } = {}) {
  let last = 0;
  let after = 0; // the afterSequence sent; null: live only (the history is gone)
  let closed = false;
  let finished = false;
  let controller = null;
  let endSequence = null; // a terminal run's last sequence, from its snapshot

  const status = (state, detail) => handlers.status && handlers.status(state, detail);

  function handle(message) {
    if (message.snapshot) {
      const run = message.snapshot.run || {};
      if (isTerminal(run.state)) endSequence = Number(run.lastSequence || 0);
      handlers.snapshot(message.snapshot);
    } else if (message.batch) {
      const events = message.batch.events || [];
      if (!events.length) return;
      last = Number(events[events.length - 1].sequence || last);
      after = last;
      if (events.some((e) => e.type === "EVENT_TYPE_RUN_FINISHED")) finished = true;
      handlers.events(events);
    } else if (message.error) {
      throw new ApiError(0, message);
    }
  }

  async function once() {
    controller = new AbortController();
    let timer = null;
    const arm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), silenceMs);
    };
    try {
      arm();
      const response = await fetch(url(`${run}:watch`, after === null ? {} : { afterSequence: after }), {
        headers: authHeaders({ Accept: "application/x-ndjson" }),
        signal: controller.signal,
        cache: "no-store",
      });
      if (!response.ok) throw await failure(response);
      status("live");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        arm();
        buffer += decoder.decode(value, { stream: true });
        let start = 0;
        let newline;
        while ((newline = buffer.indexOf("\n", start)) >= 0) {
          const line = buffer.slice(start, newline);
          start = newline + 1;
          if (line.trim()) handle(JSON.parse(line));
        }
        buffer = buffer.slice(start);
      }
      if (buffer.trim()) handle(JSON.parse(buffer));
    } finally {
      clearTimeout(timer);
    }
  }

  (async () => {
    let delay = 500;
    status("connecting");
    while (!closed && !finished) {
      try {
        await once();
        // A stream that ended without RUN_FINISHED: a terminal run whose
        // history holds none (ended before it started) once every event up
        // to its last was seen; otherwise a cut: resume.
        if (!finished && endSequence !== null && (last >= endSequence || after === null)) finished = true;
        delay = 500;
      } catch (error) {
        if (closed) return;
        if (error instanceof ApiError && (FATAL.has(error.status) || error.error.code === 11)) {
          // 11 = OUT_OF_RANGE: the history asked for is no longer kept.
          if (error.error.code === 11 && after !== null) {
            after = null;
            if (handlers.gap) handlers.gap();
          } else {
            status("error", error);
            return;
          }
        }
        status("reconnecting", error);
      }
      if (closed || finished) break;
      await sleep(delay);
      delay = Math.min(delay * 2, 10000);
    }
    if (!closed) status("ended");
  })();

  return {
    close() {
      closed = true;
      if (controller) controller.abort();
    },
    get lastSequence() {
      return last;
    },
  };
}
