// The model page: one result in the FULL view (metrics, the pipeline drawn
// from aikit's description, the per-fold score table), and its trained model
// (train, test, holdout metrics and confusion matrix).

import * as api from "./api.js";
import { drawEdges, parse, pipelineMarkup } from "./pipeline.js";
import {
  fmtInt,
  fmtScore,
  fmtSeconds,
  fmtTime,
  href,
  html,
  metricLabel,
  outcomeLabel,
  render,
  shortId,
  sleep,
} from "./util.js";

/** aikit's fold columns in a readable order: test scores, train scores, the rest. */
export function foldColumns(folds) {
  const names = new Set();
  for (const fold of folds) for (const key of Object.keys(fold.values || {})) names.add(key);
  const rank = (name) => (name.startsWith("test_") ? 0 : name.startsWith("train_") ? 1 : name === "n_test_samples" ? 3 : 2);
  return [...names].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function foldTable(folds) {
  if (!folds.length) return html`<p class="muted">No fold ran.</p>`;
  const columns = foldColumns(folds);
  const sorted = [...folds].sort((a, b) => (a.foldNb || 0) - (b.foldNb || 0));
  const cell = (column, value) => {
    if (value === undefined || value === null) return "—";
    if (column === "n_test_samples") return fmtInt(value);
    if (column.endsWith("_time")) return fmtSeconds(value);
    return fmtScore(value);
  };
  const stats = (column) => {
    const values = sorted.map((f) => (f.values || {})[column]).filter((v) => v !== undefined && v !== null).map(Number);
    if (!values.length) return [null, null];
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    return [mean, Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length)];
  };
  // One row per aikit column, one column per fold: five folds fit, thirty columns would not.
  return html`<div class="table-wrap"><table class="data folds" id="folds-table">
    <thead><tr><th>aikit column</th>${sorted.map((fold) => html`<th class="num" data-fold="${fold.foldNb || 0}">fold ${fold.foldNb || 0}</th>`)}
      <th class="num stat">mean</th><th class="num stat">std</th></tr></thead>
    <tbody>${columns.map((c) => {
      const [mean, std] = stats(c);
      return html`<tr class="${c.startsWith("test_") ? "test" : ""}"><th><code>${c}</code></th>${sorted.map(
        (fold) => html`<td class="num">${cell(c, (fold.values || {})[c])}</td>`,
      )}<td class="num stat">${cell(c, mean)}</td><td class="num stat">${c === "n_test_samples" ? "" : cell(c, std)}</td></tr>`;
    })}</tbody>
  </table></div>
  <p class="muted small">aikit's columns and sign conventions (e.g. <code>log_loss_patched</code> and
  <code>neg_mean_squared_error</code> are negated so that higher is better).</p>`;
}

function metricsTable(metrics, primary) {
  if (!metrics || !metrics.length) return html`<p class="muted">No score.</p>`;
  return html`<table class="data metrics"><thead><tr><th>Metric</th><th class="num">Mean</th><th class="num">Std</th><th class="num">Train mean</th></tr></thead>
    <tbody>${metrics.map(
      (m) => html`<tr class="${m.metric === primary ? "primary" : ""}"><td>${metricLabel(m.metric)}${m.metric === primary ? html` <span class="badge">primary</span>` : ""}</td>
        <td class="num">${fmtScore(m.mean)}</td><td class="num">${fmtScore(m.std)}</td><td class="num">${fmtScore(m.trainMean)}</td></tr>`,
    )}</tbody></table>`;
}

/** A confusion matrix as a heat-map table (shade: share of the true label's rows). */
export function confusionMarkup(matrix) {
  const labels = matrix.labels || [];
  const rows = (matrix.rows || []).map((r) => (r.counts || []).map(Number));
  if (!labels.length || !rows.length) return html``;
  return html`<div class="table-wrap"><table class="confusion" id="confusion-matrix">
    <thead><tr><th class="corner">true ↓ · predicted →</th>${labels.map((l) => html`<th>${l}</th>`)}</tr></thead>
    <tbody>${rows.map((counts, i) => {
      const total = counts.reduce((a, b) => a + b, 0) || 1;
      return html`<tr><th>${labels[i]}</th>${counts.map((count, j) => {
        const share = count / total;
        // Right predictions in green, wrong ones in red, shaded by their share of the true label's rows.
        const hue = i === j ? "22, 163, 74" : "220, 38, 38";
        const background = count ? `rgba(${hue}, ${(0.1 + share * 0.8).toFixed(3)})` : "#f3f4f6";
        const dark = share > 0.55;
        return html`<td style="background: ${background}; color: ${dark ? "#fff" : "inherit"}"
          title="${count} of ${total} rows of '${labels[i]}' predicted '${labels[j]}'">${fmtInt(count)}<span class="share">${(share * 100).toFixed(0)}%</span></td>`;
      })}</tr>`;
    })}</tbody></table></div>`;
}

function holdoutMarkup(model, result) {
  const evaluation = model.holdoutEvaluation;
  if (!evaluation || !(evaluation.metrics || []).length) return html``;
  const cv = (metric) => {
    const summary = (result.metrics || []).find((m) => m.metric === metric);
    return summary ? summary.mean : null;
  };
  return html`<div class="holdout" id="holdout">
    <h3>Holdout test <span class="muted">· ${fmtInt(evaluation.rowCount)} rows never seen by the search · ${fmtTime(evaluation.createTime)}</span></h3>
    <div class="two">
      <table class="data metrics" id="holdout-metrics"><thead><tr><th>Metric</th><th class="num">Holdout</th><th class="num" title="Mean over the cross-validation folds">CV mean</th></tr></thead>
        <tbody>${evaluation.metrics.map(
          (m) => html`<tr><td>${metricLabel(m.metric)}</td><td class="num"><strong>${fmtScore(m.value)}</strong></td><td class="num muted">${fmtScore(cv(m.metric))}</td></tr>`,
        )}</tbody></table>
      <div>${evaluation.confusionMatrix ? confusionMarkup(evaluation.confusionMatrix) : ""}</div>
    </div>
  </div>`;
}

export function modelPage(root, id, page) {
  const name = `modelResults/${id}`;
  let result = null;
  let trained = null;
  let observer = null;
  document.title = `Model ${id} · AutoML`;
  render(root, html`<p class="muted">Loading ${name}…</p>`);

  async function load() {
    result = await api.get(name, { view: "MODEL_RESULT_VIEW_FULL" });
    if (page.gone()) return;
    const [run, models] = await Promise.all([
      api.get(result.run).catch(() => null),
      api.get("trainedModels", { filter: `model_result="${name}"`, pageSize: 10 }).catch(() => ({ trainedModels: [] })),
    ]);
    if (page.gone()) return;
    trained = (models.trainedModels || [])[0] || null;
    draw(run);
    if (trained && trained.state === "STATE_TRAINING") follow().catch((error) => page.error(error));
  }

  function draw(run) {
    const primary = run ? run.primaryMetric : "";
    const succeeded = result.outcome === "OUTCOME_SUCCEEDED";
    const runId = shortId(result.run);
    const root2 = parse(result.modelJson);
    render(
      root,
      html`<nav class="crumbs"><a href="#/">Experiments</a><a href="${href(result.run)}">Run ${runId}</a><span>Model #${result.index}</span></nav>
        <div class="page-head">
          <div>
            <h1>${result.modelFamily || "Model"} <span class="muted">#${result.index}</span>
              <span class="badge ${succeeded ? "state-succeeded" : "state-failed"}">${outcomeLabel(result.outcome)}</span>
              ${run && run.bestModelResult === name ? html`<span class="badge state-best">best of the run</span>` : ""}</h1>
            <div class="muted">${(result.pipelineSteps || []).join(" → ")} · evaluated ${fmtTime(result.createTime)} · aikit job <code>${result.jobId}</code></div>
            ${searchLine(result)}
          </div>
          <div class="actions"><a class="button" href="${href(result.run)}">Back to the run</a>
            <a class="button" href="#/compare/${encodeURIComponent(runId)}?models=${encodeURIComponent(id)}">Compare with the top models</a></div>
        </div>
        ${result.errorMessage ? html`<div class="banner ${result.outcome === "OUTCOME_INTERRUPTED" ? "info" : "error"}"><strong>${outcomeLabel(result.outcome)}</strong><pre class="error-text">${result.errorMessage}</pre></div>` : ""}
        <div class="cards">
          <div class="card"><h3>${primary ? metricLabel(primary) : "Primary score"}</h3><div class="big">${fmtScore(result.primaryScore)}</div>
            <div class="card-foot">mean over ${result.foldsRun} fold${result.foldsRun === 1 ? "" : "s"}</div></div>
          <div class="card"><h3>Fit time</h3><div class="big">${fmtSeconds(result.fitTimeSeconds)}</div><div class="card-foot">sum over the folds</div></div>
          <div class="card"><h3>Score time</h3><div class="big">${fmtSeconds(result.scoreTimeSeconds)}</div><div class="card-foot">sum over the folds</div></div>
          <div class="card"><h3>New best</h3><div class="big">${result.wasNewBest ? "yes" : "no"}</div><div class="card-foot">when it was evaluated</div></div>
        </div>
        <section class="panel"><h2>Pipeline</h2><div id="pipeline">${pipelineMarkup(result.modelJson)}</div>
          ${root2 ? html`<details class="raw"><summary>aikit description (JSON)</summary><pre>${prettyJson(result.modelJson)}</pre></details>` : ""}
        </section>
        <div class="two">
          <section class="panel"><h2>Cross-validation</h2>${metricsTable(result.metrics, primary)}</section>
          <section class="panel" id="trained"><h2>Trained model</h2><div id="trained-body"></div></section>
        </div>
        <section class="panel"><h2>Scores per fold</h2><div id="folds">${foldTable(result.folds || [])}</div></section>`,
    );
    const pipeline = root.querySelector("#pipeline");
    drawEdges(pipeline);
    observer = new ResizeObserver(() => drawEdges(pipeline));
    observer.observe(pipeline);
    drawTrained();
  }

  /** How the candidate was proposed and searched: its kind, its sample of rows, an ensemble's members. */
  function searchLine(result) {
    const parts = [];
    if (result.jobType) parts.push(html`proposed as <strong id="job-type">${result.jobType}</strong>`);
    if (Number(result.sampleRows)) parts.push(html`cross-validated on ${fmtInt(result.sampleRows)} rows`);
    const members = [...(result.ensembleMembers || [])].sort((a, b) => Number(b.weight || 0) - Number(a.weight || 0));
    if (members.length) {
      parts.push(
        html`<span id="ensemble-members">ensemble of ${members.map(
          (m, i) => html`${i ? ", " : ""}<a href="${href(m.modelResult)}">#${m.index}</a> ×${String(Number(Number(m.weight || 0).toFixed(2)))}`,
        )}</span>`,
      );
    }
    return parts.length ? html`<div class="muted">${parts.map((p, i) => html`${i ? " · " : ""}${p}`)}</div>` : "";
  }

  function prettyJson(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 1);
    } catch {
      return text;
    }
  }

  function drawTrained() {
    const body = root.querySelector("#trained-body");
    if (!body) return;
    const succeeded = result.outcome === "OUTCOME_SUCCEEDED";
    if (!trained) {
      render(
        body,
        succeeded
          ? html`<p>Not trained yet: refit this pipeline on every training row (the data without the holdout), then test it on the holdout.</p>
              <button type="button" class="button primary" id="train-model">Train this model</button>`
          : html`<p class="muted">Only a model whose cross-validation succeeded can be trained.</p>`,
      );
    } else {
      const stateName = String(trained.state || "").replace("STATE_", "").toLowerCase();
      const tested = trained.holdoutEvaluation && (trained.holdoutEvaluation.metrics || []).length;
      render(
        body,
        html`<dl class="facts">
            <div><dt>Model</dt><dd><code>${trained.name}</code></dd></div>
            <div><dt>State</dt><dd><span class="badge state-${stateName === "ready" ? "succeeded" : stateName === "failed" ? "failed" : "running"}" id="trained-state">${stateName}</span></dd></div>
            ${trained.state === "STATE_READY" ? html`<div><dt>Fitted on</dt><dd>${fmtInt(trained.trainingRows)} rows${trained.includesHoldout ? " (the holdout included: no holdout test)" : ""} in ${fmtSeconds(trained.fitTimeSeconds)}</dd></div>
              <div><dt>File</dt><dd>${fmtInt(trained.artifactSizeBytes)} bytes · sha256 <code title="${trained.artifactSha256}">${String(trained.artifactSha256 || "").slice(0, 12)}…</code></dd></div>` : ""}
            ${trained.errorMessage ? html`<div><dt>Error</dt><dd class="error-text">${trained.errorMessage}</dd></div>` : ""}
          </dl>
          ${trained.state === "STATE_TRAINING" ? html`<p class="muted"><span class="spinner"></span> Training…</p>` : ""}
          ${trained.state === "STATE_READY" && !trained.includesHoldout ? html`<button type="button" class="button primary" id="test-model">${tested ? "Test again" : "Test on the holdout"}</button>` : ""}
          ${trained.state === "STATE_FAILED" && succeeded ? html`<button type="button" class="button" id="train-model">Train again</button>` : ""}`,
      );
    }
    const holdout = root.querySelector("#holdout-body") || document.createElement("div");
    holdout.id = "holdout-body";
    render(holdout, trained ? holdoutMarkup(trained, result) : html``);
    root.querySelector("#trained").append(holdout);
    const train = body.querySelector("#train-model");
    if (train) train.addEventListener("click", () => act(train, startTraining));
    const test = body.querySelector("#test-model");
    if (test) test.addEventListener("click", () => act(test, runTest));
  }

  async function act(button, fn) {
    button.disabled = true;
    button.insertAdjacentHTML("beforeend", ' <span class="spinner"></span>');
    try {
      await fn();
    } catch (error) {
      button.disabled = false;
      page.error(error);
    }
  }

  async function startTraining() {
    trained = await api.post("trainedModels", { modelResult: name });
    drawTrained();
    follow().catch((error) => page.error(error));
  }

  async function follow() {
    while (!page.gone() && trained && trained.state === "STATE_TRAINING") {
      await sleep(1000);
      if (page.gone()) return;
      trained = await api.get(trained.name);
    }
    if (!page.gone()) drawTrained();
  }

  async function runTest() {
    const evaluation = await api.post(`${trained.name}:test`);
    trained = { ...trained, holdoutEvaluation: evaluation };
    drawTrained();
  }

  load().catch((error) => {
    page.error(error);
    if (error.status === 404 && !result) {
      render(root, html`<div class="banner info">No model result <code>${name}</code> here. <a href="#/runs">See the runs</a>.</div>`);
    }
  });
  return () => {
    if (observer) observer.disconnect();
  };
}
