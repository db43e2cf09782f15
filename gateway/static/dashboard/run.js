// The run page: live state from WatchRun (snapshot, then events), progress
// against the stop conditions, every model's score and the best so far over
// time (scattergl), the leaderboard, failures, exports. The page builds and
// renders the DOM; runstate.js folds the stream into a plain state object (no
// DOM), runchart.js draws the chart.

import * as api from "./api.js";
import { loadPlotly, prefetchPlotly } from "./charts.js";
import { Leaderboard, rowOf } from "./leaderboard.js";
import { RunChart } from "./runchart.js";
import {
  applyEvents,
  applyRun,
  applySnapshot,
  elapsed,
  initialState,
  modelCounts,
  stopInfo,
  streamText,
} from "./runstate.js";
import {
  fmtInt,
  fmtScore,
  fmtSeconds,
  fmtTime,
  higherIsBetter,
  href,
  html,
  isTerminal,
  metricLabel,
  outcomeLabel,
  parseDuration,
  progressBar,
  reasonLabel,
  render,
  shortId,
  stateBadge,
  taskLabel,
} from "./util.js";

const EXPORTS = [
  ["EXPORT_FORMAT_CSV", "CSV"],
  ["EXPORT_FORMAT_XLSX", "Excel"],
  ["EXPORT_FORMAT_JSON", "JSON lines"],
];

export function exportLinks(run) {
  return html`<span class="exports"><span class="muted">Export</span>${EXPORTS.map(
    ([format, label]) => html`<a class="button small" data-export="${format}" href="${api.exportUrl(run, format)}" download>${label}</a>`,
  )}</span>`;
}

/** Exports with a key: fetched as a blob with the Authorization header. */
export function wireExports(root) {
  root.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-export]");
    if (!link || !api.apiKey()) return;
    event.preventDefault();
    link.classList.add("busy");
    api
      .download(link.getAttribute("href"))
      .catch((error) => alert(`Export failed: ${error.message}`))
      .finally(() => link.classList.remove("busy"));
  });
}

export function runPage(root, id, page) {
  const name = `runs/${id}`;
  // Everything the stream says, folded by runstate.js; this page renders it.
  const state = initialState();
  // The charting library downloads at once, and runs (which holds the main
  // thread for a moment) once the leaderboard's first rows are on screen; its
  // other pages are read by a worker meanwhile.
  prefetchPlotly();
  let firstRowsShown = null;
  const firstRows = new Promise((resolve) => {
    firstRowsShown = resolve;
  });
  const plotlyLoading = firstRows.then(loadPlotly);
  plotlyLoading.catch(() => {});
  let tableTimer = null;
  let watcher = null;
  let refreshing = null;

  document.title = `Run ${id} · AutoML`;
  render(
    root,
    html`<nav class="crumbs"><a href="#/">Experiments</a><span id="crumb-exp" hidden></span><span>Run ${id}</span></nav>
      <div class="page-head">
        <div>
          <h1>Run <code>${id}</code> <span id="run-state"></span></h1>
          <div id="run-sub" class="muted"></div>
        </div>
        <div class="actions">
          <span id="stream-status" class="stream"></span>
          <button type="button" id="stop-run" class="button danger" hidden>Stop run</button>
          <a class="button" href="#/compare/${encodeURIComponent(id)}">Compare top models</a>
          ${exportLinks(name)}
        </div>
      </div>
      <div id="stop-reason" class="banner" hidden></div>
      <div id="run-notes" class="banner info" hidden></div>
      <div class="cards">
        <div class="card"><h3>Models</h3><div id="models-progress"></div><div class="card-foot" id="models-foot"></div></div>
        <div class="card"><h3>Time</h3><div id="time-progress"></div><div class="card-foot" id="time-foot"></div></div>
        <div class="card"><h3>Best score</h3><div class="big" id="best-score">—</div><div class="card-foot" id="best-foot"></div></div>
        <div class="card"><h3>Search</h3><div id="search-info" class="card-foot"></div></div>
      </div>
      <section class="panel">
        <div class="panel-head"><h2>Score of each model</h2>
          <div class="seg" role="group" aria-label="Horizontal axis">
            <button type="button" data-x="time" class="on">over time</button><button type="button" data-x="index">by model #</button>
          </div>
        </div>
        <div id="chart" class="chart" data-points="0"><div class="chart-empty muted">Waiting for the first model…</div></div>
      </section>
      <section class="panel">
        <div class="panel-head"><h2>Leaderboard</h2>
          <div class="actions"><button type="button" id="compare-picked" class="button small" disabled>Compare picked</button></div>
        </div>
        <div id="leaderboard"><p class="muted">Loading…</p></div>
      </section>
      <section class="panel" id="failures-panel" hidden>
        <details><summary><h2>Failed models <span id="failed-count" class="badge state-failed"></span></h2></summary>
        <div id="failures"></div></details>
      </section>`,
  );
  const $ = (selector) => root.querySelector(selector);
  wireExports(root);
  const chart = new RunChart($("#chart"), state, { library: plotlyLoading, page });

  const board = new Leaderboard($("#leaderboard"), {
    run: name,
    onSelectionChange(selected) {
      const button = $("#compare-picked");
      button.disabled = selected.size < 2;
      button.textContent = selected.size ? `Compare picked (${selected.size})` : "Compare picked";
    },
  });
  $("#compare-picked").addEventListener("click", () => {
    const ids = [...board.selected].map(shortId).join(",");
    location.hash = `#/compare/${encodeURIComponent(id)}?models=${encodeURIComponent(ids)}`;
  });
  $("#stop-run").addEventListener("click", async (event) => {
    event.target.disabled = true;
    try {
      await api.post(`${name}:stop`);
    } catch (error) {
      page.error(error);
      event.target.disabled = false;
    }
  });
  root.querySelector(".seg").addEventListener("click", (event) => {
    const button = event.target.closest("[data-x]");
    if (!button) return;
    for (const b of root.querySelectorAll(".seg [data-x]")) b.classList.toggle("on", b === button);
    chart.setMode(button.dataset.x);
  });

  // ------------------------------------------------------------ header, cards

  function drawTime() {
    const run = state.run;
    if (!run) return;
    const budget = parseDuration(run.stopConditions && run.stopConditions.maxDuration);
    const seconds = elapsed(state, performance.now());
    const live = !isTerminal(run.state);
    render(
      $("#time-progress"),
      budget
        ? progressBar(seconds / budget, `${fmtSeconds(seconds)} of ${fmtSeconds(budget)}`, "time-bar")
        : progressBar(live ? null : 1, `${fmtSeconds(seconds)}${live ? " · no time budget" : ""}`, "time-bar"),
    );
    $("#time-foot").textContent = run.startTime
      ? `started ${fmtTime(run.startTime)}${run.endTime ? ` · ended ${fmtTime(run.endTime)}` : ""}`
      : `created ${fmtTime(run.createTime)}`;
  }

  function drawHeader() {
    const run = state.run;
    if (!run) return;
    render($("#run-state"), stateBadge(run.state));
    const experiment = state.experiment;
    const metric = metricLabel(run.primaryMetric);
    render(
      $("#run-sub"),
      html`${experiment ? html`<a href="${href(experiment.name)}">${experiment.displayName || shortId(experiment.name)}</a> · ` : ""}ranked by
        <strong>${metric}</strong> · ${run.parallelWorkers} worker${run.parallelWorkers === 1 ? "" : "s"} · created ${fmtTime(run.createTime)}`,
    );
    $("#stop-run").hidden = isTerminal(run.state) || run.state === "RUN_STATE_STOPPING";
    const banner = $("#stop-reason");
    const stop = stopInfo(state);
    if (stop && !stop.queued) {
      const reason = reasonLabel(stop.reason);
      const message = stop.message;
      banner.className = `banner ${stop.kind}`;
      banner.dataset.reason = stop.reason;
      // A failed or cancelled run says why, plainly; other runs give the detail of their stop.
      const detail = stop.failed
        ? html`<div class="run-reason" id="run-reason">Reason: <strong>${message || "no reason was recorded"}</strong></div>`
        : message
          ? html`<div class="muted">${message}</div>`
          : "";
      render(
        banner,
        html`<strong>${stop.title}</strong>
          ${reason ? html` — stop reason: <strong class="reason">${reason}</strong>` : ""}${detail}`,
      );
      banner.hidden = false;
    } else if (stop) {
      banner.className = `banner ${stop.kind}`;
      banner.dataset.reason = "";
      render(
        banner,
        html`<strong id="queue-position">Queued: position ${fmtInt(stop.position)}</strong>
          <div class="muted">${stop.message}</div>`,
      );
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
    const conditions = run.stopConditions || {};
    const counts = modelCounts(run);
    const { done, maxModels } = counts;
    render(
      $("#models-progress"),
      maxModels
        ? progressBar(done / maxModels, `${fmtInt(done)} of ${fmtInt(maxModels)}`, "models-bar")
        : html`<div class="big" id="models-bar">${fmtInt(done)} <span class="muted small">no model limit</span></div>`,
    );
    // Candidates interrupted by a normal stop are not failures: counted apart, in a neutral colour.
    render(
      $("#models-foot"),
      html`<span id="models-evaluated">${fmtInt(counts.evaluated)}</span> evaluated ·
        <span class="failed-part ${counts.failed ? "warn" : ""}">+<span id="models-failed">${fmtInt(counts.failed)}</span> failed</span>${
          counts.stopped
            ? html` · <span class="stopped-part" title="interrupted by the stop of the run: not failures">+<span id="models-stopped">${fmtInt(counts.stopped)}</span> stopped</span>`
            : ""
        }`,
    );
    drawNotes();
    $("#best-score").textContent = fmtScore(run.bestScore);
    const target = conditions.targetScore;
    render(
      $("#best-foot"),
      html`${metric}${target !== undefined ? ` · target ${fmtScore(target)}` : ""}${
        run.bestModelResult ? html` · <a href="${href(run.bestModelResult)}">best model</a>` : ""
      }`,
    );
    const started = state.started;
    const lines = [];
    if (experiment) lines.push(html`<div>target <code>${experiment.targetColumn}</code> · ${taskLabel(started ? started.task : experiment.resolvedTask || experiment.task)}</div>`);
    if (started && Number(started.searchRows)) {
      lines.push(html`<div>${fmtInt(started.searchRows)} rows searched · ${fmtInt(started.holdoutRows)} held out</div>`);
    }
    const features = started ? (started.featureColumns || []).length : 0;
    if (features || experiment) {
      lines.push(html`<div>${features ? `${fmtInt(features)} features` : ""}${features && experiment ? " · " : ""}${experiment ? `${experiment.cvFolds}-fold CV` : ""}</div>`);
    }
    if (conditions.noImprovementModels) lines.push(html`<div>stops after ${conditions.noImprovementModels} models without improvement</div>`);
    render($("#search-info"), lines.length ? lines : html`<span class="muted">—</span>`);
    drawTime();
  }

  /** What the runner adapted to the data or fell back on, one line each. */
  function drawNotes() {
    const notes = (state.run && state.run.notes) || [];
    const element = $("#run-notes");
    element.hidden = !notes.length;
    element.dataset.count = String(notes.length);
    if (notes.length) {
      render(element, html`<strong>Notes</strong> <span class="muted">what the search adapted to the data or fell back on</span>
        <ul class="notes-list">${notes.map((note) => html`<li>${note}</li>`)}</ul>`);
    }
  }

  const ticker = setInterval(() => {
    if (state.run && !isTerminal(state.run.state)) drawTime();
  }, 500);

  // ------------------------------------------------------------- leaderboard

  function drawTableSoon() {
    if (tableTimer) return;
    tableTimer = setTimeout(() => {
      tableTimer = null;
      board.renderBody();
    }, 400);
  }

  function showPage(answer, rows, first) {
    board.setMetric(answer.metric, answer.higherIsBetter);
    board.upsert(rows);
    if (first) {
      board.render();
      performance.mark("automl:leaderboard-first-page");
      // Let the rows paint before the chart's library runs.
      requestAnimationFrame(() => setTimeout(firstRowsShown, 0));
    } else board.renderBody();
  }

  function leaderboardLoaded() {
    if (!$("#leaderboard tbody")) board.render();
    $("#leaderboard").dataset.loaded = "true";
    performance.mark("automl:leaderboard-loaded");
    firstRowsShown();
  }

  /** Every page of the leaderboard, read by a worker (off the main thread);
   * on the main thread when workers are not available. */
  function loadLeaderboard() {
    let worker;
    try {
      worker = new Worker(new URL("./lbworker.js", import.meta.url), { type: "module" });
    } catch {
      return loadLeaderboardHere();
    }
    return new Promise((resolve) => {
      let first = true;
      const end = (fallback) => {
        worker.terminate();
        resolve(fallback ? loadLeaderboardHere() : undefined);
      };
      worker.onmessage = ({ data }) => {
        if (page.gone()) return end(false);
        if (data.error) {
          page.error(api.answerError(data.error.status, data.error.body));
          firstRowsShown();
          return end(false);
        }
        if (data.rows.length || first) showPage(data, data.rows, first);
        first = false;
        if (data.done) {
          leaderboardLoaded();
          end(false);
        }
      };
      worker.onerror = (event) => {
        event.preventDefault();
        end(first);
      };
      worker.postMessage({ path: `${name}/leaderboard`, key: api.apiKey(), pageSize: 1000 });
    });
  }

  async function loadLeaderboardHere() {
    let first = true;
    try {
      await api.getAll(`${name}/leaderboard`, "entries", {}, {
        pageSize: 1000,
        onPage(entries, answer) {
          if (page.gone()) throw new Error("gone");
          showPage(answer, entries.map((entry) => rowOf(entry.modelResult, answer.metric)), first);
          first = false;
        },
      });
      leaderboardLoaded();
    } catch (error) {
      if (!page.gone()) page.error(error);
    } finally {
      firstRowsShown();
    }
  }

  // ----------------------------------------------------------------- stream

  function onSnapshot(snapshot) {
    applySnapshot(state, snapshot, performance.now());
    const run = state.run;
    if (!board.metric) board.setMetric(run.primaryMetric, higherIsBetter(run.primaryMetric));
    if (!state.experiment && run.experiment) {
      api
        .get(run.experiment)
        .then((experiment) => {
          state.experiment = experiment;
          board.setSearch(experiment.cvFolds, state.started && state.started.searchRows);
          render($("#crumb-exp"), html`<a href="${href(experiment.name)}">${experiment.displayName || shortId(experiment.name)}</a>`);
          $("#crumb-exp").hidden = false;
          drawHeader();
        })
        .catch(() => {});
    }
    drawHeader();
  }

  function onEvents(events) {
    const { rows, started, finished } = applyEvents(state, events, board.metric);
    if (started) board.setSearch(state.experiment && state.experiment.cvFolds, state.started.searchRows);
    if (rows.length) {
      board.upsert(rows);
      if ($("#leaderboard tbody")) drawTableSoon();
    }
    drawFailures();
    drawHeader();
    chart.drawSoon();
    if (finished) refreshAfterEnd();
  }

  function drawFailures() {
    const failures = state.failures;
    if (!failures.length) return;
    $("#failures-panel").hidden = false;
    $("#failed-count").textContent = fmtInt(failures.length);
    const shown = failures.slice(-200).reverse();
    render(
      $("#failures"),
      html`<div class="table-wrap"><table class="data"><thead><tr><th class="num">#</th><th>Model family</th><th>Outcome</th><th>Error</th></tr></thead>
        <tbody>${shown.map(
          (f) => html`<tr><td class="num"><a href="${href(f.modelResult)}">${f.index}</a></td><td>${f.modelFamily}</td>
            <td>${outcomeLabel(f.outcome)}</td><td class="error-text">${f.errorMessage}</td></tr>`,
        )}</tbody></table></div>${failures.length > shown.length ? html`<p class="muted">The last ${shown.length} of ${fmtInt(failures.length)}.</p>` : ""}`,
    );
  }

  /** After RUN_FINISHED: the stored run (end time, message) and the final leaderboard. */
  function refreshAfterEnd() {
    if (refreshing) return;
    refreshing = Promise.all([
      api.get(name).then((run) => {
        if (page.gone()) return;
        applyRun(state, run);
        drawHeader();
      }),
      loadLeaderboard(),
    ]).catch(() => {});
  }

  function onStatus(status, detail) {
    const element = $("#stream-status");
    if (!element) return;
    element.className = `stream ${status}`;
    element.textContent = streamText(status);
    element.title = detail ? String(detail.message || detail) : "";
    if (status === "error") {
      page.error(detail);
      if (detail && detail.status === 404) {
        render(root, html`<nav class="crumbs"><a href="#/">Experiments</a><span>Run ${id}</span></nav>
          <div class="banner info">No run <code>${name}</code> here (it does not exist, or belongs to another tenant). <a href="#/runs">See the runs</a>.</div>`);
      }
    }
    if (status === "ended" && state.run && isTerminal(state.run.state)) drawHeader();
  }

  loadLeaderboard();
  watcher = api.watchRun(name, { snapshot: onSnapshot, events: onEvents, status: onStatus });

  return () => {
    watcher.close();
    clearInterval(ticker);
    clearTimeout(tableTimer);
    chart.destroy();
  };
}
