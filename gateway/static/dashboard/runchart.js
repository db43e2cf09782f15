// The run page's chart: every model's score and the best so far, over time
// or by model number (scattergl when the browser has WebGL), with the target
// score as a dotted line. It draws the points runstate.js collects; drawings
// are throttled (one per 250 ms at most) and never overlap.

import { CONFIG, hasWebGL, layout } from "./charts.js";
import { chartKey } from "./runstate.js";
import { href, metricLabel } from "./util.js";

/** Plotly's traces and layout of the run's points; xMode "time" or "index". */
export function figure(state, xMode, type, revision) {
  const { points, best } = state;
  const byTime = xMode === "time";
  const run = state.run || {};
  const target = run.stopConditions && run.stopConditions.targetScore;
  const traces = [
    {
      type,
      mode: "markers",
      name: "model score",
      x: byTime ? points.t : points.i,
      y: points.y,
      text: points.text,
      hovertemplate: "%{text}<br>score %{y:.4f}<extra></extra>",
      marker: { size: 6, color: "#2563eb", opacity: 0.6 },
    },
    {
      type,
      mode: "lines",
      name: "best so far",
      x: byTime ? best.t : best.i,
      y: best.y,
      line: { shape: "hv", color: "#f97316", width: 2.5 },
      hovertemplate: "best so far %{y:.4f}<extra></extra>",
    },
  ];
  const shapes =
    target !== undefined
      ? [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: target, y1: target, line: { color: "#16a34a", dash: "dot", width: 1.5 } }]
      : [];
  const look = layout({
    datarevision: revision,
    uirevision: xMode,
    height: 340,
    xaxis: { title: { text: byTime ? "seconds since the run started" : "model # (evaluation order)" }, zeroline: false, gridcolor: "#eef0f3" },
    yaxis: { title: { text: metricLabel(run.primaryMetric) }, zeroline: false, gridcolor: "#eef0f3" },
    shapes,
  });
  return { traces, look };
}

export class RunChart {
  /**
   * element: the chart's container (#chart); state: the page's runstate;
   * library: a promise of Plotly (the page decides when it runs);
   * page: { error(error), gone() }.
   */
  constructor(element, state, { library, page }) {
    this.element = element;
    this.state = state;
    this.library = library;
    this.page = page;
    this.xMode = "time";
    this.Plotly = null;
    this.ready = false; // a plot is in the element
    this.revision = 0;
    this.timer = null;
    this.drawing = null;
    this.again = null; // what a call made during a drawing asked for: "mode" or "data"
    this.drawnPoints = -1;
    this.drawnKey = "";
    this.lastDraw = 0;
  }

  /** Points over time ("time") or by model number ("index"). */
  setMode(xMode) {
    this.xMode = xMode;
    this.draw(true);
  }

  /** Draw soon: at most once per 250 ms. */
  drawSoon() {
    if (this.timer) return;
    const wait = Math.max(0, 250 - (performance.now() - this.lastDraw));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.draw(false);
    }, wait);
  }

  /** Draw the chart; calls made while a drawing is under way are folded into one more. */
  draw(modeChanged) {
    if (this.drawing) {
      this.again = this.again || (modeChanged ? "mode" : "data");
      return;
    }
    this.drawing = this.drawNow(modeChanged)
      .catch((error) => this.page.error(error))
      .finally(() => {
        this.drawing = null;
        const next = this.again;
        this.again = null;
        if (next && !this.page.gone()) this.draw(next === "mode");
      });
  }

  async drawNow(modeChanged) {
    const { points } = this.state;
    if (!points.y.length && !this.ready) return;
    if (this.ready && !modeChanged && this.drawnPoints === points.y.length && this.drawnKey === chartKey(this.state)) return;
    if (!this.Plotly) {
      try {
        this.Plotly = await this.library;
      } catch (error) {
        this.element.textContent = error.message;
        return;
      }
      if (this.page.gone()) return;
    }
    const Plotly = this.Plotly;
    this.lastDraw = performance.now();
    const element = this.element;
    const type = hasWebGL() ? "scattergl" : "scatter";
    this.revision += 1;
    const { traces, look } = figure(this.state, this.xMode, type, this.revision);
    if (!this.ready) {
      element.replaceChildren();
      await Plotly.newPlot(element, traces, look, CONFIG);
      this.ready = true;
      element.on("plotly_click", (data) => {
        const point = data.points && data.points[0];
        if (point && point.curveNumber === 0 && points.names[point.pointIndex]) location.hash = href(points.names[point.pointIndex]);
      });
    } else {
      await Plotly.react(element, traces, look, CONFIG);
    }
    if (modeChanged) Plotly.relayout(element, { "xaxis.autorange": true, "yaxis.autorange": true });
    this.drawnPoints = points.y.length;
    this.drawnKey = chartKey(this.state);
    element.dataset.points = String(points.y.length);
    element.dataset.type = type;
    // For measurements: when the chart last drew, and with how many points.
    performance.mark("automl:chart-drawn", { detail: { points: points.y.length } });
  }

  /** The page is left: no more drawing, and Plotly lets go of the element. */
  destroy() {
    clearTimeout(this.timer);
    if (this.Plotly && this.ready) this.Plotly.purge(this.element);
  }
}
