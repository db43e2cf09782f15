// Plotly, loaded on the first page that draws a chart (the file is served by
// the gateway from the plotly Python package: no CDN, no network).

let loading = null;
const SOURCE = "vendor/plotly.min.js";

/** Fetch the library into the HTTP cache without running it (running it
 * takes the main thread for a moment: a page can choose when). */
export function prefetchPlotly() {
  if (window.Plotly || document.querySelector(`link[href="${SOURCE}"]`)) return;
  const link = document.createElement("link");
  link.rel = "preload";
  link.as = "script";
  link.href = SOURCE;
  document.head.append(link);
}

export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = SOURCE;
      script.async = true;
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => {
        loading = null;
        reject(new Error("the charting library (vendor/plotly.min.js) did not load"));
      };
      document.head.append(script);
    });
  }
  return loading;
}

let webgl = null;

/** Whether the browser can draw WebGL (scattergl); otherwise SVG is used. */
export function hasWebGL() {
  if (webgl === null) {
    try {
      const canvas = document.createElement("canvas");
      const gl = canvas.getContext("webgl") || canvas.getContext("experimental-webgl");
      webgl = Boolean(gl);
      // Give the context back at once: browsers keep only a few alive.
      const lose = gl && gl.getExtension("WEBGL_lose_context");
      if (lose) lose.loseContext();
    } catch {
      webgl = false;
    }
  }
  return webgl;
}

export const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

export const PALETTE = [
  "#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea",
  "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d",
];

export function layout(extra = {}) {
  return {
    margin: { l: 56, r: 16, t: 16, b: 44 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12, color: "#1f2937" },
    hoverlabel: { font: { size: 12 } },
    legend: { orientation: "h", y: 1.12, x: 0 },
    ...extra,
  };
}
