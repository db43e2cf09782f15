// The leaderboard table: every succeeded result of a run held in memory,
// sorted in memory, and only one page of rows (100) in the DOM, so that a run
// with thousands of models stays fast.

import { esc, fmtInt, fmtScore, fmtSeconds, href, html, metricLabel, metricOf, render, shortId } from "./util.js";

const COLUMNS = [
  { key: "rank", label: "Rank", numeric: true },
  { key: "index", label: "#", numeric: true, title: "Position in the run's evaluation order" },
  { key: "family", label: "Model family" },
  { key: "score", label: "Score (mean ± std)", numeric: true },
  { key: "trainMean", label: "Train mean", numeric: true, title: "Mean score on the training part of each fold" },
  { key: "fitTime", label: "Fit time", numeric: true, title: "Sum of the folds' fit times" },
  { key: "folds", label: "Folds", numeric: true },
];

/** A leaderboard row from a ModelResult (API) or a ModelEvaluated event. */
export function rowOf(result, metric, fromEvent = false) {
  const summary = metricOf(result.metrics, metric);
  return {
    name: fromEvent ? result.modelResult : result.name,
    index: Number(result.index || 0),
    family: result.modelFamily || "",
    steps: fromEvent ? null : result.pipelineSteps || [],
    score: summary ? Number(summary.mean) : Number(result.primaryScore),
    std: summary ? Number(summary.std || 0) : null,
    trainMean: summary && summary.trainMean !== undefined ? Number(summary.trainMean) : null,
    fitTime: Number(result.fitTimeSeconds || 0),
    folds: Number(result.foldsRun || 0),
    sampleRows: Number(result.sampleRows || 0),
    // An ensemble's members, heaviest first: [{ name, index, weight }].
    members: (result.ensembleMembers || [])
      .map((m) => ({ name: m.modelResult || "", index: Number(m.index || 0), weight: Number(m.weight || 0) }))
      .sort((a, b) => b.weight - a.weight || a.index - b.index),
    rank: 0,
  };
}

/** "0.5", "0.25", "0.33": a member's weight as a short fraction. */
export function fmtWeight(weight) {
  return String(Number(Number(weight).toFixed(2)));
}

/** The members of an ensemble row, linked: "ensemble of #3 ×0.5, #7 ×0.3". */
export function membersHtml(members) {
  const parts = members.map(
    (m) => `${m.name ? `<a href="${esc(href(m.name))}">#${m.index}</a>` : `#${m.index}`} ×${esc(fmtWeight(m.weight))}`,
  );
  return `<div class="steps ensemble-members">ensemble of ${parts.join(", ")}</div>`;
}

/** The folds cell: "3/5" when fewer than the experiment's folds ran, and the
 * rows of a candidate cross-validated on a sample of the search rows. */
export function foldsHtml(row, cvFolds, searchRows) {
  const partial = cvFolds && row.folds < cvFolds;
  const folds = partial
    ? `<span class="partial" title="${row.folds} of the experiment's ${cvFolds} folds ran">${row.folds}/${cvFolds}</span>`
    : String(row.folds);
  const sampled = row.sampleRows && searchRows && row.sampleRows < searchRows;
  return sampled
    ? `${folds}<div class="steps sample-rows" title="cross-validated on a sample of ${esc(fmtInt(searchRows))} search rows">${esc(fmtInt(row.sampleRows))} rows</div>`
    : folds;
}

export class Leaderboard {
  constructor(element, { run, pageSize = 100, onSelectionChange } = {}) {
    this.element = element;
    this.run = run;
    this.pageSize = pageSize;
    this.rows = new Map();
    this.metric = "";
    this.higherIsBetter = true;
    // The experiment's cross-validation folds and the run's search rows (0: unknown).
    this.cvFolds = 0;
    this.searchRows = 0;
    this.sortKey = "rank";
    this.ascending = true;
    this.page = 0;
    this.filter = "";
    this.selected = new Set();
    this.onSelectionChange = onSelectionChange;
    this.ranked = [];
    this.view = [];
    this.dirty = true;
    this.element.classList.add("leaderboard");
    this.element.addEventListener("click", (event) => this.click(event));
    this.element.addEventListener("input", (event) => {
      if (event.target.matches("input.lb-filter")) {
        this.filter = event.target.value.trim().toLowerCase();
        this.page = 0;
        this.dirty = true;
        this.renderBody();
      }
    });
    this.element.addEventListener("change", (event) => {
      if (event.target.matches("input.lb-pick")) {
        const name = event.target.dataset.name;
        if (event.target.checked) this.selected.add(name);
        else this.selected.delete(name);
        if (this.onSelectionChange) this.onSelectionChange(this.selected);
      } else if (event.target.matches("select.lb-page")) {
        this.page = Number(event.target.value);
        this.renderBody();
      }
    });
  }

  setMetric(metric, higherIsBetter) {
    if (metric && metric !== "METRIC_UNSPECIFIED") this.metric = metric;
    this.higherIsBetter = higherIsBetter;
    this.dirty = true;
  }

  /** What "3/5" folds and sampled rows are measured against; redraws when it changed. */
  setSearch(cvFolds, searchRows) {
    const folds = Number(cvFolds || 0);
    const rows = Number(searchRows || 0);
    if (folds === this.cvFolds && rows === this.searchRows) return;
    this.cvFolds = folds;
    this.searchRows = rows;
    if (this.element.querySelector("tbody")) this.renderBody();
  }

  /** Add or replace rows (by name); an event's row never replaces an API row. */
  upsert(rows) {
    for (const row of rows) {
      const known = this.rows.get(row.name);
      if (known && row.steps === null) continue;
      this.rows.set(row.name, row);
    }
    this.dirty = true;
  }

  get size() {
    return this.rows.size;
  }

  /** Ranks (ties share the better rank), then the chosen order and filter. */
  compute() {
    if (!this.dirty) return;
    const sign = this.higherIsBetter ? -1 : 1;
    const ranked = [...this.rows.values()];
    ranked.sort((a, b) => sign * (a.score - b.score) || a.index - b.index);
    let previous = null;
    ranked.forEach((row, i) => {
      row.rank = previous !== null && row.score === previous.score ? previous.rank : i + 1;
      previous = row;
    });
    this.ranked = ranked;
    let view = ranked;
    if (this.filter) {
      view = view.filter((row) => row.family.toLowerCase().includes(this.filter) || (row.steps || []).join(" ").toLowerCase().includes(this.filter));
    } else {
      view = view.slice();
    }
    const key = this.sortKey;
    if (key !== "rank") {
      const direction = this.ascending ? 1 : -1;
      const value = key === "score" ? (row) => sign * row.score : (row) => row[key];
      view.sort((a, b) => {
        const x = value(a);
        const y = value(b);
        if (typeof x === "string") return direction * x.localeCompare(y) || a.rank - b.rank;
        return direction * ((x ?? -Infinity) - (y ?? -Infinity)) || a.rank - b.rank;
      });
    } else if (!this.ascending) {
      view.reverse();
    }
    this.view = view;
    this.dirty = false;
  }

  /** The best `n` rows by rank. */
  top(n) {
    this.compute();
    return this.ranked.slice(0, n);
  }

  click(event) {
    const header = event.target.closest("[data-sort]");
    if (header) {
      const key = header.dataset.sort;
      if (this.sortKey === key) this.ascending = !this.ascending;
      else {
        this.sortKey = key;
        // Better first for scores and ranks, A-Z for text, largest first for the rest.
        this.ascending = key === "rank" || key === "family" || key === "score";
      }
      this.page = 0;
      this.dirty = true;
      this.render();
      return;
    }
    const pager = event.target.closest("[data-page]");
    if (pager && !pager.disabled) {
      this.page += Number(pager.dataset.page);
      this.renderBody();
    }
  }

  /** The whole component (header, filter, table, pager). */
  render() {
    const sorted = (key) => (this.sortKey === key ? (this.ascending ? "ascending" : "descending") : "none");
    render(
      this.element,
      html`<div class="lb-tools">
          <input class="lb-filter" type="search" placeholder="Filter by model family or step" value="${this.filter}" aria-label="Filter the leaderboard">
          <span class="lb-count muted"></span>
        </div>
        <div class="table-wrap"><table class="data lb-table">
          <thead><tr>
            <th class="pick" title="Pick models to compare"></th>
            ${COLUMNS.map(
              (c) => html`<th class="${c.numeric ? "num" : ""}" aria-sort="${sorted(c.key)}" ${c.title ? html`title="${c.title}"` : ""}>
                <button type="button" class="sort" data-sort="${c.key}">${c.key === "score" && this.metric ? `${metricLabel(this.metric)} (mean ± std)` : c.label}<span class="arrow">${
                  this.sortKey === c.key ? (this.ascending ? "▲" : "▼") : ""
                }</span></button></th>`,
            )}
          </tr></thead>
          <tbody></tbody>
        </table></div>
        <div class="pager"></div>`,
    );
    this.renderBody();
  }

  /** Only the rows of the current page and the pager. */
  renderBody() {
    this.compute();
    const body = this.element.querySelector("tbody");
    if (!body) {
      this.render();
      return;
    }
    const total = this.view.length;
    const pages = Math.max(1, Math.ceil(total / this.pageSize));
    this.page = Math.max(0, Math.min(this.page, pages - 1));
    const start = this.page * this.pageSize;
    const rows = this.view.slice(start, start + this.pageSize);
    const best = this.ranked.length ? this.ranked[0].score : null;
    // Plain string building: 100 rows of a few cells, every value escaped.
    let out = "";
    for (const row of rows) {
      const link = href(row.name);
      const steps = row.members && row.members.length
        ? membersHtml(row.members)
        : row.steps && row.steps.length > 1
          ? `<div class="steps">${esc(row.steps.join(" → "))}</div>`
          : "";
      out += `<tr data-name="${esc(row.name)}"${row.score === best ? ' class="best"' : ""}>
        <td class="pick"><input type="checkbox" class="lb-pick" data-name="${esc(row.name)}" aria-label="Compare ${esc(shortId(row.name))}"${this.selected.has(row.name) ? " checked" : ""}></td>
        <td class="num">${row.rank}</td>
        <td class="num">${row.index}</td>
        <td><a href="${esc(link)}">${esc(row.family || shortId(row.name))}</a>${steps}</td>
        <td class="num score">${fmtScore(row.score)}${row.std === null ? "" : `<span class="std"> ± ${fmtScore(row.std)}</span>`}</td>
        <td class="num">${fmtScore(row.trainMean)}</td>
        <td class="num">${esc(fmtSeconds(row.fitTime))}</td>
        <td class="num folds">${foldsHtml(row, this.cvFolds, this.searchRows)}</td>
      </tr>`;
    }
    if (!rows.length) {
      out = `<tr><td colspan="${COLUMNS.length + 1}" class="empty">${this.rows.size ? "No model matches the filter." : "No model evaluated yet."}</td></tr>`;
    }
    body.innerHTML = out;
    this.element.dataset.total = String(this.rows.size);
    this.element.dataset.shown = String(rows.length);
    const count = this.element.querySelector(".lb-count");
    count.textContent = this.filter ? `${fmtInt(total)} of ${fmtInt(this.rows.size)} models` : `${fmtInt(this.rows.size)} models`;
    const pager = this.element.querySelector(".pager");
    if (pages <= 1) {
      pager.innerHTML = "";
      return;
    }
    let options = "";
    for (let p = 0; p < pages; p += 1) {
      options += `<option value="${p}"${p === this.page ? " selected" : ""}>${fmtInt(p * this.pageSize + 1)}–${fmtInt(Math.min(total, (p + 1) * this.pageSize))}</option>`;
    }
    pager.innerHTML = `<button type="button" class="button small" data-page="-1"${this.page === 0 ? " disabled" : ""}>‹ Previous</button>
      <label>Rows <select class="lb-page" aria-label="Page">${options}</select> of ${fmtInt(total)}</label>
      <button type="button" class="button small" data-page="1"${this.page >= pages - 1 ? " disabled" : ""}>Next ›</button>`;
  }
}
