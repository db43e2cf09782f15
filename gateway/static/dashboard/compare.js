// Comparison of a run's top N models (or the models picked in the
// leaderboard): every metric side by side, grouped bar charts, times, folds,
// pipelines and the parameters that differ.

import * as api from "./api.js";
import { CONFIG, PALETTE, layout, loadPlotly } from "./charts.js";
import { flatParams } from "./pipeline.js";
import { esc, fmtScore, fmtSeconds, href, higherIsBetter, html, metricLabel, metricOf, render, shortId } from "./util.js";

const SIZES = [3, 5, 10, 20];

export function comparePage(root, id, page, query) {
  const run = `runs/${id}`;
  const picked = (query.get("models") || "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => /^[A-Za-z0-9_-]{1,128}$/.test(s))
    .slice(0, 50);
  const n = Math.max(2, Math.min(50, Number(query.get("n")) || 5));
  let Plotly = null;
  let differingOnly = true;
  document.title = `Compare · run ${id} · AutoML`;
  render(root, html`<p class="muted">Loading the models…</p>`);

  async function load() {
    const runInfo = await api.get(run);
    let results;
    const ranks = new Map();
    if (picked.length) {
      results = await Promise.all(picked.map((m) => api.get(`modelResults/${m}`)));
    } else {
      const board = await api.get(`${run}/leaderboard`, { pageSize: n });
      for (const entry of board.entries || []) ranks.set(entry.modelResult.name, entry.rank);
      results = await Promise.all((board.entries || []).map((entry) => api.get(entry.modelResult.name)));
    }
    if (page.gone()) return;
    draw(runInfo, results, ranks);
  }

  function draw(runInfo, results, ranks) {
    const primary = runInfo.primaryMetric;
    const metrics = [];
    for (const result of results) for (const m of result.metrics || []) if (!metrics.includes(m.metric)) metrics.push(m.metric);
    metrics.sort((a, b) => (a === primary ? -1 : b === primary ? 1 : 0));
    const params = results.map((r) => flatParams(r.modelJson));
    const paramNames = [...new Set(params.flatMap((p) => Object.keys(p)))].sort();
    const label = (r) => `#${r.index} ${r.modelFamily}`;
    const bestOf = (values, higher) => {
      const present = values.filter((v) => v !== null);
      if (!present.length) return null;
      return higher ? Math.max(...present) : Math.min(...present);
    };
    const metricRow = (metric) => {
      const values = results.map((r) => {
        const s = metricOf(r.metrics, metric);
        return s ? Number(s.mean) : null;
      });
      const top = bestOf(values, higherIsBetter(metric));
      return html`<tr class="${metric === primary ? "primary" : ""}"><th>${metricLabel(metric)}${higherIsBetter(metric) ? "" : html` <span class="muted small">(lower is better)</span>`}</th>
        ${results.map((r, i) => {
          const s = metricOf(r.metrics, metric);
          return html`<td class="num${values[i] !== null && values[i] === top && results.length > 1 ? " top" : ""}">${s ? html`${fmtScore(s.mean)}<span class="std"> ± ${fmtScore(s.std)}</span>` : "—"}</td>`;
        })}</tr>`;
    };
    const plainRow = (title, cells, lowerBetter = false) => {
      const top = lowerBetter ? bestOf(cells.map((c) => c.value), false) : null;
      return html`<tr><th>${title}</th>${cells.map((c) => html`<td class="num${top !== null && c.value === top && results.length > 1 ? " top" : ""}">${c.text}</td>`)}</tr>`;
    };
    const paramRows = paramNames
      .map((p) => {
        const values = params.map((x) => (p in x ? x[p] : "—"));
        const differs = new Set(values).size > 1;
        return { p, values, differs };
      })
      .filter((row) => !differingOnly || row.differs);
    render(
      root,
      html`<nav class="crumbs"><a href="#/">Experiments</a><a href="${href(run)}">Run ${id}</a><span>Compare</span></nav>
        <div class="page-head">
          <div><h1>Compare ${picked.length ? `${results.length} picked models` : `the top ${results.length} models`}</h1>
            <div class="muted">ranked by ${metricLabel(primary)}</div></div>
          <div class="actions"><span class="muted">Top</span>${SIZES.map(
            (size) => html`<a class="button small${!picked.length && size === n ? " on" : ""}" href="#/compare/${encodeURIComponent(id)}?n=${size}">${size}</a>`,
          )}<a class="button" href="${href(run)}">Back to the run</a></div>
        </div>
        ${results.length ? "" : html`<div class="banner info">No succeeded model to compare yet.</div>`}
        <section class="panel"><h2>Metrics</h2>
          <div class="two charts"><div id="compare-chart" class="chart"></div><div id="compare-chart-loss" class="chart"></div></div>
        </section>
        <section class="panel"><h2>Side by side</h2>
          <div class="table-wrap"><table class="data compare" id="compare-table">
            <thead><tr><th></th>${results.map(
              (r, i) => html`<th class="num"><span class="swatch" style="background:${PALETTE[i % PALETTE.length]}"></span>
                <a href="${href(r.name)}">${label(r)}</a>${ranks.has(r.name) ? html`<div class="muted small">rank ${ranks.get(r.name)}</div>` : ""}</th>`,
            )}</tr></thead>
            <tbody>
              ${metrics.map(metricRow)}
              ${plainRow("Fit time", results.map((r) => ({ value: Number(r.fitTimeSeconds), text: fmtSeconds(r.fitTimeSeconds) })), true)}
              ${plainRow("Score time", results.map((r) => ({ value: Number(r.scoreTimeSeconds), text: fmtSeconds(r.scoreTimeSeconds) })), true)}
              ${plainRow("Folds run", results.map((r) => ({ value: r.foldsRun, text: String(r.foldsRun) })))}
              <tr><th>Pipeline</th>${results.map((r) => html`<td class="steps-cell">${(r.pipelineSteps || []).join(" → ")}</td>`)}</tr>
            </tbody>
          </table></div>
        </section>
        <section class="panel"><div class="panel-head"><h2>Parameters</h2>
          <label class="small"><input type="checkbox" id="differing-only" ${differingOnly ? "checked" : ""}> only those that differ</label></div>
          ${paramRows.length
            ? html`<div class="table-wrap"><table class="data compare params-table"><thead><tr><th>Parameter</th>${results.map((r) => html`<th>${label(r)}</th>`)}</tr></thead>
              <tbody>${paramRows.map((row) => html`<tr class="${row.differs ? "differs" : ""}"><th><code>${row.p}</code></th>${row.values.map((v) => html`<td>${v}</td>`)}</tr>`)}</tbody></table></div>`
            : html`<p class="muted">No parameter differs.</p>`}
        </section>`,
    );
    root.querySelector("#differing-only").addEventListener("change", (event) => {
      differingOnly = event.target.checked;
      draw(runInfo, results, ranks);
    });
    chart(results, metrics);
  }

  async function chart(results, metrics) {
    if (!results.length) return;
    Plotly = Plotly || (await loadPlotly());
    if (page.gone()) return;
    const groups = [
      ["#compare-chart", metrics.filter(higherIsBetter), "higher is better"],
      ["#compare-chart-loss", metrics.filter((m) => !higherIsBetter(m)), "lower is better"],
    ];
    for (const [selector, group, note] of groups) {
      const element = root.querySelector(selector);
      if (!group.length) {
        element.remove();
        continue;
      }
      const traces = results.map((r, i) => ({
        type: "bar",
        name: esc(`#${r.index} ${r.modelFamily}`), // Plotly reads tags in names and hover texts
        x: group.map(metricLabel),
        y: group.map((m) => (metricOf(r.metrics, m) || {}).mean ?? null),
        error_y: { type: "data", array: group.map((m) => (metricOf(r.metrics, m) || {}).std ?? 0), visible: true, thickness: 1 },
        marker: { color: PALETTE[i % PALETTE.length] },
        hovertemplate: `${esc(shortId(r.name))}<br>%{x}: %{y:.4f}<extra>#${esc(r.index)}</extra>`,
      }));
      const values = traces.flatMap((t) => t.y).filter((v) => v !== null);
      const low = Math.min(...values);
      const high = Math.max(...values);
      const pad = (high - low) * 0.25 || Math.abs(high) * 0.05 || 0.05;
      await Plotly.newPlot(
        element,
        traces,
        layout({
          barmode: "group",
          height: 320,
          margin: { l: 56, r: 16, t: 40, b: 40 },
          title: { text: note, font: { size: 12 }, x: 0.01 },
          yaxis: { range: [Math.max(group.every((m) => m !== "METRIC_R2") ? 0 : -Infinity, low - pad), high + pad], gridcolor: "#eef0f3" },
          legend: { orientation: "h", y: -0.15 },
        }),
        CONFIG,
      );
      element.dataset.traces = String(traces.length);
    }
  }

  load().catch((error) => page.error(error));
  return () => {
    if (Plotly) for (const element of root.querySelectorAll(".js-plotly-plot")) Plotly.purge(element);
  };
}
