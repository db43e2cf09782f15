// The run page's state (gateway/static/dashboard/runstate.js), folded from
// WatchRun's messages without a browser: node --test tests/gateway/js/
// (tests/gateway/test_dashboard.py runs it in the pytest suite).

import assert from "node:assert/strict";
import test from "node:test";

import { figure } from "../../../gateway/static/dashboard/runchart.js";
import {
  applyEvents,
  applyRun,
  applySnapshot,
  chartKey,
  elapsed,
  initialState,
  modelCounts,
  stopInfo,
  streamText,
} from "../../../gateway/static/dashboard/runstate.js";

const T0 = "2024-05-01T10:00:00Z";
const at = (seconds) => new Date(Date.parse(T0) + seconds * 1000).toISOString();

function snapshot(run = {}, elapsed = "0s") {
  return {
    elapsed,
    run: {
      name: "runs/r1",
      state: "RUN_STATE_RUNNING",
      primaryMetric: "METRIC_ACCURACY",
      startTime: T0,
      lastSequence: "0",
      stopConditions: { maxModels: 10 },
      ...run,
    },
  };
}

function evaluated(sequence, index, score, best, extra = {}) {
  return {
    sequence: String(sequence),
    type: "EVENT_TYPE_MODEL_EVALUATED",
    createTime: at(index),
    modelEvaluated: {
      modelResult: `modelResults/m${index}`,
      index,
      modelFamily: "<b>Forest</b>",
      primaryScore: score,
      bestScore: best,
      isNewBest: score === best,
      modelsEvaluated: index,
      modelsFailed: 0,
      metrics: [{ metric: "METRIC_ACCURACY", mean: score, std: 0.01 }],
      ...extra,
    },
  };
}

function failed(sequence, index, outcome = "OUTCOME_FAILED", extra = {}) {
  return {
    sequence: String(sequence),
    type: "EVENT_TYPE_MODEL_FAILED",
    createTime: at(index),
    modelFailed: { modelResult: `modelResults/m${index}`, index, modelFamily: "SVC", outcome, errorMessage: "boom", ...extra },
  };
}

test("a snapshot sets the run, its sequence, elapsed time and the chart's start", () => {
  const state = initialState();
  applySnapshot(state, snapshot({ lastSequence: "7" }, "12.5s"), 1000);
  assert.equal(state.run.name, "runs/r1");
  assert.equal(state.snapshotSeq, 7);
  assert.equal(state.elapsedBase, 12.5);
  assert.equal(state.elapsedAt, 1000);
  assert.equal(state.startMs, Date.parse(T0));
  assert.equal(elapsed(state, 3000), 14.5);
});

test("evaluated models become points, best-so-far steps and leaderboard rows", () => {
  const state = initialState();
  applySnapshot(state, snapshot(), 0);
  const { rows, started, finished } = applyEvents(state, [evaluated(1, 1, 0.8, 0.8), evaluated(2, 2, 0.7, 0.8)], "");
  assert.equal(started, false);
  assert.equal(finished, false);
  assert.deepEqual(state.points.y, [0.8, 0.7]);
  assert.deepEqual(state.points.t, [1, 2]);
  assert.deepEqual(state.points.i, [1, 2]);
  assert.deepEqual(state.points.names, ["modelResults/m1", "modelResults/m2"]);
  assert.equal(state.points.text[0], "#1 &lt;b&gt;Forest&lt;/b&gt;", "Plotly reads tags in text: escaped");
  assert.deepEqual(state.best.y, [0.8, 0.8]);
  assert.deepEqual(
    rows.map((r) => [r.name, r.index, r.score, r.std]),
    [
      ["modelResults/m1", 1, 0.8, 0.01],
      ["modelResults/m2", 2, 0.7, 0.01],
    ],
  );
  assert.equal(state.run.modelsEvaluated, 2);
  assert.equal(state.run.bestScore, 0.8);
  assert.equal(state.run.bestModelResult, "modelResults/m1");
  assert.deepEqual(modelCounts(state.run), { evaluated: 2, failed: 0, stopped: 0, done: 2, maxModels: 10 });
});

test("events the snapshot holds already add points but change no count", () => {
  const state = initialState();
  applySnapshot(state, snapshot({ lastSequence: "2", modelsEvaluated: 2, notes: ["sampled 1,000 rows"] }), 0);
  applyEvents(
    state,
    [
      evaluated(1, 1, 0.8, 0.8, { modelsEvaluated: 1 }),
      { sequence: "2", type: "EVENT_TYPE_RUN_NOTE", runNote: { message: "sampled 1,000 rows" } },
    ],
    "",
  );
  assert.equal(state.points.y.length, 1);
  assert.equal(state.run.modelsEvaluated, 2);
  applyEvents(state, [{ sequence: "3", type: "EVENT_TYPE_RUN_NOTE", runNote: { message: "sampled 1,000 rows" } }], "");
  assert.deepEqual(state.run.notes, ["sampled 1,000 rows"], "each note once");
  applyEvents(state, [{ sequence: "4", type: "EVENT_TYPE_RUN_NOTE", runNote: { message: "no GPU" } }], "");
  assert.deepEqual(state.run.notes, ["sampled 1,000 rows", "no GPU"]);
});

test("interrupted candidates are counted as stopped, not failed", () => {
  const state = initialState();
  applySnapshot(state, snapshot(), 0);
  applyEvents(state, [failed(1, 1, "OUTCOME_FAILED", { modelsFailed: 1 }), failed(2, 2, "OUTCOME_INTERRUPTED"), failed(3, 3, "OUTCOME_INTERRUPTED")], "");
  assert.equal(state.failures.length, 1);
  assert.equal(state.failures[0].index, 1);
  const counts = modelCounts(state.run);
  assert.equal(counts.failed, 1);
  assert.equal(counts.stopped, 2);
  assert.equal(counts.done, 1);
});

test("a run started, queued, asked to stop, then finished", () => {
  const state = initialState();
  applySnapshot(state, snapshot({ state: "RUN_STATE_PENDING", startTime: undefined }), 0);
  assert.equal(stopInfo(state), null);
  assert.equal(elapsed(state, 5000), 0);

  const first = applyEvents(state, [{ sequence: "1", type: "EVENT_TYPE_RUN_STARTED", createTime: T0, runStarted: { searchRows: "120" } }], "");
  assert.equal(first.started, true);
  assert.equal(state.started.searchRows, "120");
  assert.equal(state.startMs, Date.parse(T0));

  applyEvents(state, [{ sequence: "2", type: "EVENT_TYPE_RUN_QUEUED", runQueued: { position: 3, message: "", takeovers: 1 } }], "");
  assert.equal(state.run.state, "RUN_STATE_QUEUED");
  assert.deepEqual(stopInfo(state), { kind: "info", queued: true, position: 3, message: "waiting for a runner" });

  applyEvents(
    state,
    [
      { sequence: "3", type: "EVENT_TYPE_RUN_STATE_CHANGED", runStateChanged: { state: "RUN_STATE_RUNNING", stopReason: "STOP_REASON_UNSPECIFIED" } },
      { sequence: "4", type: "EVENT_TYPE_STOP_REQUESTED", stopRequested: { reason: "STOP_REASON_USER", message: "asked by alice" } },
      { sequence: "5", type: "EVENT_TYPE_RUN_STATE_CHANGED", runStateChanged: { state: "RUN_STATE_STOPPING" } },
    ],
    "",
  );
  assert.equal(state.run.stopReason, "STOP_REASON_USER");
  assert.deepEqual(stopInfo(state), {
    kind: "info",
    stopping: true,
    failed: false,
    reason: "STOP_REASON_USER",
    message: "asked by alice",
    title: "Stopping",
  });

  const end = applyEvents(
    state,
    [
      {
        sequence: "6",
        type: "EVENT_TYPE_RUN_FINISHED",
        runFinished: { state: "RUN_STATE_STOPPED", stopReason: "STOP_REASON_USER", modelsEvaluated: 4, modelsFailed: 1, duration: "42s", bestScore: 0.9 },
      },
    ],
    "",
  );
  assert.equal(end.finished, true);
  assert.equal(state.finishedDuration, 42);
  assert.equal(elapsed(state, 1e9), 42, "an ended run without start and end times: the finished duration");
  assert.deepEqual(modelCounts(state.run), { evaluated: 4, failed: 1, stopped: 0, done: 5, maxModels: 10 });
  assert.equal(stopInfo(state).title, "Run stopped");
  assert.equal(stopInfo(state).kind, "done");

  applyRun(state, { startTime: T0, endTime: at(30), statusMessage: "stopped by the user" });
  assert.equal(elapsed(state, 1e9), 30, "the stored run's times win");
  assert.equal(state.run.name, "runs/r1", "the stored run's fields over the known ones");
  assert.equal(stopInfo(state).message, "stopped by the user");
});

test("a replayed RUN_FINISHED (older than the snapshot) does not refresh the page again", () => {
  const state = initialState();
  applySnapshot(state, snapshot({ state: "RUN_STATE_FAILED", lastSequence: "9", statusMessage: "" }), 0);
  const { finished } = applyEvents(state, [{ sequence: "9", type: "EVENT_TYPE_RUN_FINISHED", runFinished: { state: "RUN_STATE_FAILED" } }], "");
  assert.equal(finished, false);
  const info = stopInfo(state);
  assert.equal(info.kind, "error");
  assert.equal(info.failed, true);
  assert.equal(info.title, "Run failed");
});

test("queued time does not count; the stream indicator's texts", () => {
  const state = initialState();
  applySnapshot(state, snapshot({ state: "RUN_STATE_QUEUED" }, "3s"), 0);
  assert.equal(elapsed(state, 60000), 3);
  assert.equal(streamText("connecting"), "connecting…");
  assert.equal(streamText("live"), "live");
  assert.equal(streamText("ended"), "");
  assert.equal(streamText("anything"), "");
});

test("the chart: points over time or by model number, and the target line", () => {
  const state = initialState();
  applySnapshot(state, snapshot({ stopConditions: { targetScore: 0.95 } }), 0);
  applyEvents(state, [evaluated(1, 1, 0.8, 0.8), evaluated(2, 3, 0.9, 0.9)], "");
  assert.equal(chartKey(state), "0.95");
  const byTime = figure(state, "time", "scattergl", 1);
  assert.deepEqual(byTime.traces[0].x, [1, 3]);
  assert.equal(byTime.traces[0].type, "scattergl");
  assert.equal(byTime.look.shapes[0].y0, 0.95);
  assert.equal(byTime.look.yaxis.title.text, "Accuracy");
  const byIndex = figure(state, "index", "scatter", 2);
  assert.deepEqual(byIndex.traces[1].x, [1, 3]);
  assert.equal(byIndex.look.uirevision, "index");
  assert.equal(initialState().points.y.length, 0);
  assert.deepEqual(figure(initialState(), "time", "scatter", 1).look.shapes, []);
});
