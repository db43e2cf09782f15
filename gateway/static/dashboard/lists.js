// The lists: experiments and runs (paged with the API's page tokens), and an
// experiment's page with its runs (filter experiment="experiments/x").

import * as api from "./api.js";
import { prefetchPlotly } from "./charts.js";
import {
  fmtAge,
  fmtInt,
  fmtScore,
  fmtSeconds,
  fmtTime,
  href,
  html,
  isTerminal,
  metricLabel,
  parseDuration,
  parseTime,
  reasonLabel,
  render,
  shortId,
  stateBadge,
  taskLabel,
} from "./util.js";

/** A paged list over page tokens: the tokens of the pages seen form a stack. */
class PagedList {
  constructor(element, { path, field, query = {}, pageSize = 25, columns, row, empty, onPage, refreshMs = 0 }) {
    Object.assign(this, { element, path, field, query, pageSize, columns, row, empty, onPage, refreshMs });
    this.tokens = [""];
    this.timer = null;
    this.closed = false;
    element.addEventListener("click", (event) => {
      const button = event.target.closest("[data-move]");
      if (!button || button.disabled) return;
      if (button.dataset.move === "next" && this.next) this.tokens.push(this.next);
      if (button.dataset.move === "previous" && this.tokens.length > 1) this.tokens.pop();
      this.load();
    });
  }

  async load() {
    clearTimeout(this.timer);
    const token = this.tokens[this.tokens.length - 1];
    const answer = await api.get(this.path, { ...this.query, pageSize: this.pageSize, pageToken: token });
    if (this.closed) return;
    const items = answer[this.field] || [];
    this.next = answer.nextPageToken || "";
    if (this.onPage) await this.onPage(items);
    if (this.closed) return;
    const first = (this.tokens.length - 1) * this.pageSize;
    const total = Number(answer.totalSize || 0);
    render(
      this.element,
      items.length
        ? html`<div class="table-wrap"><table class="data list">
              <thead><tr>${this.columns.map((c) => html`<th class="${c.num ? "num" : ""}">${c.label}</th>`)}</tr></thead>
              <tbody>${items.map((item) => this.row(item))}</tbody>
            </table></div>
            <div class="pager">${
              this.tokens.length > 1 || this.next
                ? html`<button type="button" class="button small" data-move="previous" ${this.tokens.length > 1 ? "" : "disabled"}>‹ Previous</button>
                  <span class="muted">${fmtInt(first + 1)}–${fmtInt(first + items.length)}${total ? ` of ${fmtInt(total)}` : ""}</span>
                  <button type="button" class="button small" data-move="next" ${this.next ? "" : "disabled"}>Next ›</button>`
                : html`<span class="muted">${fmtInt(items.length)} in all</span>`
            }</div>`
        : html`<p class="empty muted">${this.empty}</p>`,
    );
    this.element.dataset.count = String(items.length);
    if (this.refreshMs && this.shouldRefresh && this.shouldRefresh(items)) {
      this.timer = setTimeout(() => this.load().catch(() => {}), this.refreshMs);
    }
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
  }
}

function runDuration(run) {
  const start = parseTime(run.startTime);
  if (start === null) return "—";
  const end = parseTime(run.endTime) ?? Date.now();
  return fmtSeconds((end - start) / 1000);
}

function conditionsText(conditions) {
  const parts = [];
  if (!conditions) return "—";
  const duration = parseDuration(conditions.maxDuration);
  if (duration) parts.push(`${fmtSeconds(duration)} budget`);
  if (conditions.maxModels) parts.push(`${fmtInt(conditions.maxModels)} models max`);
  if (conditions.targetScore !== undefined) parts.push(`target ${fmtScore(conditions.targetScore)}`);
  if (conditions.noImprovementModels) parts.push(`${conditions.noImprovementModels} without improvement`);
  return parts.join(" · ") || "—";
}

/** The runs list; `experiment` filters it; experiment names are looked up. */
function runsList(element, experiment, names = new Map()) {
  const list = new PagedList(element, {
    path: "runs",
    field: "runs",
    query: experiment ? { filter: `experiment="${experiment}"` } : {},
    pageSize: 25,
    empty: experiment ? "No run of this experiment yet." : "No run yet.",
    refreshMs: 4000,
    columns: [
      { label: "Run" },
      { label: "Experiment" },
      { label: "State" },
      { label: "Models", num: true },
      { label: "Best score", num: true },
      { label: "Stop conditions" },
      { label: "Stop reason" },
      { label: "Started" },
      { label: "Duration", num: true },
    ],
    async onPage(runs) {
      const missing = [...new Set(runs.map((r) => r.experiment))].filter((e) => e && !names.has(e));
      await Promise.all(
        missing.map((e) =>
          api
            .get(e)
            .then((x) => names.set(e, x.displayName || shortId(e)))
            .catch(() => names.set(e, shortId(e))),
        ),
      );
    },
    row: (run) => html`<tr data-name="${run.name}">
        <td><a href="${href(run.name)}"><code>${shortId(run.name)}</code></a></td>
        <td><a href="${href(run.experiment)}">${names.get(run.experiment) || shortId(run.experiment)}</a></td>
        <td>${stateBadge(run.state)}</td>
        <td class="num">${fmtInt(run.modelsEvaluated)}${Number(run.modelsFailed) ? html` <span class="warn" title="failed">+${fmtInt(run.modelsFailed)} failed</span>` : ""}</td>
        <td class="num">${fmtScore(run.bestScore)} <span class="muted small">${metricLabel(run.primaryMetric)}</span></td>
        <td class="small">${conditionsText(run.stopConditions)}</td>
        <td>${reasonLabel(run.stopReason) || html`<span class="muted">—</span>`}</td>
        <td title="${fmtTime(run.startTime || run.createTime)}">${fmtAge(run.startTime || run.createTime)}</td>
        <td class="num">${runDuration(run)}</td>
      </tr>`,
  });
  list.shouldRefresh = (runs) => runs.some((r) => !isTerminal(r.state));
  return list;
}

export function homePage(root, page) {
  document.title = "AutoML dashboard";
  render(
    root,
    html`<div class="page-head"><div><h1>Experiments</h1><div class="muted">What to predict from which dataset; each run searches models for it.</div></div></div>
      <section class="panel"><div id="experiments"><p class="muted">Loading…</p></div></section>
      <div class="page-head"><div><h2>Recent runs</h2></div></div>
      <section class="panel"><div id="runs"><p class="muted">Loading…</p></div></section>`,
  );
  const names = new Map();
  const experiments = new PagedList(root.querySelector("#experiments"), {
    path: "experiments",
    field: "experiments",
    pageSize: 20,
    empty: "No experiment yet: upload a dataset and create one with the CLI or the API.",
    columns: [
      { label: "Experiment" },
      { label: "Target" },
      { label: "Task" },
      { label: "Metric" },
      { label: "Runs", num: true },
      { label: "Created" },
    ],
    onPage(items) {
      for (const e of items) names.set(e.name, e.displayName || shortId(e.name));
    },
    row: (e) => html`<tr data-name="${e.name}">
        <td><a href="${href(e.name)}">${e.displayName || shortId(e.name)}</a><div class="muted small"><code>${shortId(e.name)}</code></div></td>
        <td><code>${e.targetColumn}</code></td>
        <td>${taskLabel(e.resolvedTask && e.resolvedTask !== "TASK_UNSPECIFIED" ? e.resolvedTask : e.task)}</td>
        <td>${metricLabel(e.primaryMetric) || html`<span class="muted">default</span>`}</td>
        <td class="num">${fmtInt(e.runCount)}</td>
        <td title="${fmtTime(e.createTime)}">${fmtAge(e.createTime)}</td>
      </tr>`,
  });
  const runs = runsList(root.querySelector("#runs"), "", names);
  experiments
    .load()
    .then(() => runs.load())
    .then(() => {
      // The run pages' charting library, into the cache while the user reads.
      if (window.requestIdleCallback) requestIdleCallback(prefetchPlotly);
    })
    .catch((error) => page.error(error));
  return () => {
    experiments.close();
    runs.close();
  };
}

export function experimentPage(root, id, page) {
  const name = `experiments/${id}`;
  document.title = `Experiment ${id} · AutoML`;
  render(root, html`<p class="muted">Loading ${name}…</p>`);
  let runs = null;
  api
    .get(name)
    .then((e) => {
      if (page.gone()) return;
      document.title = `${e.displayName || id} · AutoML`;
      const task = e.resolvedTask && e.resolvedTask !== "TASK_UNSPECIFIED" ? e.resolvedTask : e.task;
      render(
        root,
        html`<nav class="crumbs"><a href="#/">Experiments</a><span>${e.displayName || id}</span></nav>
          <div class="page-head"><div><h1>${e.displayName || id}</h1><div class="muted">${e.description}</div></div></div>
          <section class="panel"><dl class="facts wide">
            <div><dt>Experiment</dt><dd><code>${e.name}</code></dd></div>
            <div><dt>Dataset</dt><dd><code>${e.dataset}</code></dd></div>
            <div><dt>Target</dt><dd><code>${e.targetColumn}</code> · ${taskLabel(task)}</dd></div>
            <div><dt>Primary metric</dt><dd>${metricLabel(e.primaryMetric) || "task default"}</dd></div>
            <div><dt>Validation</dt><dd>${e.cvFolds}-fold CV · ${(Number(e.holdoutFraction) * 100).toFixed(0)}% holdout · seed ${e.seed}</dd></div>
            <div><dt>Default stop conditions</dt><dd>${conditionsText(e.defaultStopConditions)}</dd></div>
            ${(e.allowedModelFamilies || []).length ? html`<div><dt>Model families</dt><dd>${e.allowedModelFamilies.join(", ")}</dd></div>` : ""}
            ${(e.excludedColumns || []).length ? html`<div><dt>Excluded columns</dt><dd>${e.excludedColumns.join(", ")}</dd></div>` : ""}
            <div><dt>Created</dt><dd>${fmtTime(e.createTime)}</dd></div>
          </dl></section>
          <div class="page-head"><div><h2>Runs</h2></div></div>
          <section class="panel"><div id="runs"><p class="muted">Loading…</p></div></section>`,
      );
      runs = runsList(root.querySelector("#runs"), name, new Map([[e.name, e.displayName || id]]));
      return runs.load();
    })
    .catch((error) => page.error(error));
  return () => {
    if (runs) runs.close();
  };
}

export function runsPage(root, page, query) {
  const wanted = query.get("experiment") || "";
  const experiment = /^[A-Za-z0-9_-]{1,128}$/.test(wanted) ? wanted : "";
  document.title = "Runs · AutoML";
  render(
    root,
    html`<nav class="crumbs"><a href="#/">Experiments</a><span>Runs</span></nav>
      <div class="page-head"><div><h1>Runs</h1>${experiment ? html`<div class="muted">of <a href="${href(`experiments/${experiment}`)}">${experiment}</a></div>` : ""}</div></div>
      <section class="panel"><div id="runs"><p class="muted">Loading…</p></div></section>`,
  );
  const runs = runsList(root.querySelector("#runs"), experiment ? `experiments/${experiment}` : "");
  runs.load().catch((error) => page.error(error));
  return () => runs.close();
}
