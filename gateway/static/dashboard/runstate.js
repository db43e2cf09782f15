// The run page's state, folded from WatchRun's messages (a snapshot, then
// batches of events) without touching the DOM: the run as last known (state,
// counts, best score, queue position, stop reason and message, notes), the
// chart's points, the failed models. run.js renders it; runchart.js draws its
// points. Nothing here reads `document` or a clock: the caller passes `now`
// (performance.now()), so node's test runner can check it
// (tests/gateway/js/runstate.test.mjs).
//
// The apply* functions change the state in place (the chart's arrays grow by
// thousands of points: they are not copied per batch) and say what the page
// has to do besides re-render.

import { rowOf } from "./leaderboard.js";
import { esc, isTerminal, parseDuration, parseTime } from "./util.js";

export function initialState() {
  return {
    run: null, // the Run as the API gives it, kept up to date by the events
    snapshotSeq: 0, // events up to this sequence are already in the snapshot's run
    elapsedBase: 0, // seconds elapsed at elapsedAt (the snapshot's `elapsed`)
    elapsedAt: 0,
    started: null, // the RunStarted event (task, rows, feature columns)
    stopMessage: "", // from STOP_REQUESTED / RUN_STATE_CHANGED
    experiment: null, // the run's Experiment, when the page has read it
    finishedDuration: null, // seconds, from RUN_FINISHED
    startMs: null, // epoch ms the chart's time axis starts at
    // The chart: every evaluated model's score, and the best so far.
    points: { t: [], i: [], y: [], text: [], names: [] },
    best: { t: [], i: [], y: [] },
    failures: [], // ModelFailed events (interrupted candidates are not failures)
  };
}

/** Seconds since the run started, for a point created at `createTime`. */
function xValue(state, createTime) {
  const ms = parseTime(createTime);
  if (state.startMs === null) state.startMs = ms;
  return ms === null ? null : Math.max(0, (ms - state.startMs) / 1000);
}

/** The first message of a watch (and of each resumed watch): the run as stored. */
export function applySnapshot(state, snapshot, now) {
  const run = snapshot.run;
  state.run = run;
  state.snapshotSeq = Number(run.lastSequence || 0);
  state.elapsedBase = parseDuration(snapshot.elapsed) || 0;
  state.elapsedAt = now;
  if (state.startMs === null) state.startMs = parseTime(run.startTime);
  return state;
}

/** The stored run read again (after RUN_FINISHED): its fields over the known ones. */
export function applyRun(state, run) {
  state.run = { ...state.run, ...run };
  return state;
}

/**
 * A batch of events. Every event adds to the chart and the failures; only
 * events newer than the snapshot change the run's counts and state (the
 * snapshot holds the older ones already). `metric` ranks the new rows (the
 * leaderboard's, else the run's primary metric).
 *
 * Returns { rows: leaderboard rows of the evaluated models, started: whether
 * RUN_STARTED came, finished: whether a new RUN_FINISHED came }.
 */
export function applyEvents(state, events, metric) {
  const { points, best, failures } = state;
  const run = state.run;
  const rows = [];
  let started = false;
  let finished = false;
  for (const event of events) {
    const fresh = Number(event.sequence) > state.snapshotSeq;
    switch (event.type) {
      case "EVENT_TYPE_RUN_STARTED":
        state.started = event.runStarted;
        started = true;
        if (state.startMs === null) state.startMs = parseTime(event.createTime);
        break;
      case "EVENT_TYPE_MODEL_EVALUATED": {
        const m = event.modelEvaluated;
        const x = xValue(state, event.createTime);
        points.t.push(x);
        points.i.push(m.index);
        points.y.push(m.primaryScore);
        points.text.push(esc(`#${m.index} ${m.modelFamily}`)); // Plotly reads tags in text
        points.names.push(m.modelResult);
        best.t.push(x);
        best.i.push(m.index);
        best.y.push(m.bestScore);
        rows.push(rowOf(m, metric || (run && run.primaryMetric), true));
        if (fresh && run) {
          run.modelsEvaluated = m.modelsEvaluated;
          run.modelsFailed = m.modelsFailed;
          if (m.modelsStopped !== undefined) run.modelsStopped = m.modelsStopped;
          run.bestScore = m.bestScore;
          if (m.isNewBest) run.bestModelResult = m.modelResult;
        }
        break;
      }
      case "EVENT_TYPE_MODEL_FAILED": {
        const f = event.modelFailed;
        const interrupted = f.outcome === "OUTCOME_INTERRUPTED";
        if (!interrupted) failures.push(f); // stopped by the run's stop: not a failure
        if (fresh && run) {
          if (!interrupted) run.modelsFailed = f.modelsFailed;
          if (f.modelsStopped !== undefined) run.modelsStopped = f.modelsStopped;
          else if (interrupted) run.modelsStopped = Number(run.modelsStopped || 0) + 1;
        }
        break;
      }
      case "EVENT_TYPE_RUN_NOTE":
        if (fresh && run) {
          // The runner stores a note before it publishes its event: the snapshot may hold it already.
          const notes = run.notes || (run.notes = []);
          if (!notes.includes(event.runNote.message)) notes.push(event.runNote.message);
        }
        break;
      case "EVENT_TYPE_RUN_STATE_CHANGED":
        if (fresh && run) {
          const change = event.runStateChanged;
          run.state = change.state;
          if (change.stopReason && change.stopReason !== "STOP_REASON_UNSPECIFIED") run.stopReason = change.stopReason;
          if (change.message) state.stopMessage = change.message;
        }
        break;
      case "EVENT_TYPE_RUN_QUEUED":
        if (fresh && run) {
          run.state = "RUN_STATE_QUEUED";
          run.queuePosition = event.runQueued.position;
          run.statusMessage = event.runQueued.message;
          run.takeovers = event.runQueued.takeovers;
        }
        break;
      case "EVENT_TYPE_STOP_REQUESTED":
        if (fresh && run) {
          const stop = event.stopRequested;
          if (!run.stopReason || run.stopReason === "STOP_REASON_UNSPECIFIED") run.stopReason = stop.reason;
          state.stopMessage = stop.message;
        }
        break;
      case "EVENT_TYPE_RUN_FINISHED": {
        const f = event.runFinished;
        finished = fresh;
        if (run) {
          run.state = f.state;
          run.stopReason = f.stopReason;
          if (f.message) run.statusMessage = f.message;
          run.modelsEvaluated = f.modelsEvaluated;
          run.modelsFailed = f.modelsFailed;
          if (f.modelsStopped !== undefined) run.modelsStopped = f.modelsStopped;
          if (f.bestModelResult) run.bestModelResult = f.bestModelResult;
          if (f.bestScore !== undefined) run.bestScore = f.bestScore;
        }
        state.finishedDuration = parseDuration(f.duration);
        break;
      }
      default:
        break;
    }
  }
  return { rows, started, finished };
}

// ------------------------------------------------------------ derived values

/** Seconds the run has run at `now` (performance.now()): time queued does not count. */
export function elapsed(state, now) {
  const run = state.run;
  if (!run) return 0;
  if (isTerminal(run.state)) {
    const start = parseTime(run.startTime);
    const end = parseTime(run.endTime);
    if (start !== null && end !== null) return (end - start) / 1000;
    if (state.finishedDuration !== null) return state.finishedDuration;
    return state.elapsedBase;
  }
  if (run.state === "RUN_STATE_PENDING") return 0;
  // Queued: no runner holds it, and time queued does not count against the budget.
  if (run.state === "RUN_STATE_QUEUED") return state.elapsedBase;
  return state.elapsedBase + (now - state.elapsedAt) / 1000;
}

/** Evaluated, failed and stopped candidates, and the model limit (0: none). */
export function modelCounts(run) {
  const conditions = run.stopConditions || {};
  const evaluated = Number(run.modelsEvaluated || 0);
  const failed = Number(run.modelsFailed || 0);
  return {
    evaluated,
    failed,
    // Candidates interrupted by a normal stop are not failures: counted apart.
    stopped: Number(run.modelsStopped || 0),
    done: evaluated + failed,
    maxModels: Number(conditions.maxModels || 0),
  };
}

/** "RUN_STATE_SUCCEEDED" -> "succeeded". */
export function stateLabelText(runState) {
  return String(runState || "").replace("RUN_STATE_", "").toLowerCase();
}

/**
 * What the banner under the title says, or null when it is hidden:
 * { kind: "error" | "info" | "done", stopping, failed, reason, message } for a
 * stopping or ended run, { kind: "info", queued: true, position, message } for a queued one.
 */
export function stopInfo(state) {
  const run = state.run;
  if (!run) return null;
  const stopping = run.state === "RUN_STATE_STOPPING";
  if (isTerminal(run.state) || stopping) {
    const failed = run.state === "RUN_STATE_FAILED" || run.state === "RUN_STATE_CANCELLED";
    return {
      kind: failed ? "error" : stopping ? "info" : "done",
      stopping,
      failed,
      reason: run.stopReason || "",
      message: run.statusMessage || state.stopMessage,
      title: stopping ? "Stopping" : `Run ${stateLabelText(run.state)}`,
    };
  }
  if (run.state === "RUN_STATE_QUEUED") {
    return { kind: "info", queued: true, position: run.queuePosition || 0, message: run.statusMessage || "waiting for a runner" };
  }
  return null;
}

const STREAM_TEXT = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", ended: "", error: "" };

/** The stream indicator's text for a watchRun status. */
export function streamText(status) {
  return STREAM_TEXT[status] ?? "";
}

/** What the chart shows besides points (the target line): it redraws when this changes. */
export function chartKey(state) {
  return String(state.run && state.run.stopConditions && state.run.stopConditions.targetScore);
}
