// aikit's model description (ModelResult.modelJson, in aikit's json_helper
// encoding) decoded and drawn: one box per step with its parameters, and for
// a GraphPipeline its edges as arrows, laid out left to right by depth.
//
// Shapes of a description (after decoding):
//   ("RandomForestClassifier", {params})                  one model
//   ("BoxCoxTargetTransformer", ("Ridge", {...}), {params}) a wrapper: inner models as arguments
//   ("GraphPipeline", {"models": {name: model}, "edges": [(a, b, c), (d, c)]})

import { html } from "./util.js";

/** aikit's json_helper encoding to JS values: tuples become arrays marked
 * `tuple`, dicts become Maps (their keys may be tuples). */
export function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === "object") {
    if (value.__type__ === "__tuple__") {
      const items = (value.__items__ || []).map(decode);
      items.tuple = true;
      return items;
    }
    if (value.__type__ === "__dict__") {
      return new Map((value.__items__ || []).map(([k, v]) => [decode(k), decode(v)]));
    }
    return new Map(Object.entries(value).map(([k, v]) => [k, decode(v)]));
  }
  return value;
}

export function isModel(value) {
  return Array.isArray(value) && value.length >= 2 && typeof value[0] === "string" && value[value.length - 1] instanceof Map;
}

function holdsModel(value) {
  if (isModel(value)) return true;
  if (Array.isArray(value)) return value.some(holdsModel);
  if (value instanceof Map) return [...value.values()].some(holdsModel);
  return false;
}

function keyName(key) {
  return Array.isArray(key) ? key.map(keyName).join(" / ") : String(key);
}

/** A parameter value as short text. */
export function valueText(value) {
  if (value === null || value === undefined) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(6)));
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const inner = value.map((v) => (typeof v === "string" ? `'${v}'` : valueText(v))).join(", ");
    return value.tuple ? `(${inner}${value.length === 1 ? "," : ""})` : `[${inner}]`;
  }
  if (value instanceof Map) {
    return `{${[...value.entries()].map(([k, v]) => `${keyName(k)}: ${valueText(v)}`).join(", ")}}`;
  }
  return String(value);
}

/** A node of the drawing: { className, name, params: [[k, v]], inner: [node],
 * graph: { nodes: [{ name, node }], edges: [[a, b, ...]] } | null }. */
export function describe(model, name = "") {
  const className = model[0];
  const params = model[model.length - 1];
  if (className === "GraphPipeline" && params.get("models") instanceof Map) {
    const nodes = [...params.get("models").entries()].map(([key, value]) => ({
      name: keyName(key),
      node: isModel(value) ? describe(value, keyName(key)) : { className: keyName(key), name: "", params: [], inner: [], graph: null },
    }));
    const edges = (params.get("edges") || []).map((edge) => (Array.isArray(edge) ? edge.map(keyName) : [keyName(edge)]));
    const rest = [...params.entries()].filter(([k]) => k !== "models" && k !== "edges");
    return { className, name, params: rest, inner: [], graph: { nodes, edges } };
  }
  const inner = [];
  const own = [];
  for (const arg of model.slice(1, -1)) if (isModel(arg)) inner.push(describe(arg));
  for (const [key, value] of params.entries()) {
    if (isModel(value)) inner.push(describe(value, keyName(key)));
    else if (holdsModel(value)) {
      const list = value instanceof Map ? [...value.entries()] : value.map((v, i) => [i, v]);
      for (const [k, v] of list) {
        if (isModel(v)) inner.push(describe(v, `${keyName(key)}[${keyName(k)}]`));
        else if (Array.isArray(v) && v.length === 2 && isModel(v[1])) inner.push(describe(v[1], keyName(v[0])));
      }
    } else own.push([keyName(key), value]);
  }
  return { className, name, params: own, inner, graph: null };
}

/** The description's parameters as {"ClassName__param": text}, for tables. */
export function flatParams(modelJson) {
  const out = {};
  const walk = (node) => {
    for (const [key, value] of node.params) out[`${node.className}__${key}`] = valueText(value);
    for (const child of node.inner) walk(child);
    if (node.graph) for (const { node: child } of node.graph.nodes) walk(child);
  };
  const root = parse(modelJson);
  if (root) walk(root);
  return out;
}

/** modelJson to a drawing node; null when absent or unreadable. */
export function parse(modelJson) {
  if (!modelJson) return null;
  try {
    const model = decode(JSON.parse(modelJson));
    return isModel(model) ? describe(model) : null;
  } catch {
    return null;
  }
}

/** Depth of each graph node: 0 for sources, else one more than its deepest
 * predecessor (each edge tuple is a path a -> b -> c). */
export function layers(graph) {
  const names = graph.nodes.map((n) => n.name);
  for (const edge of graph.edges) for (const n of edge) if (!names.includes(n)) names.push(n);
  const preds = new Map(names.map((n) => [n, new Set()]));
  for (const edge of graph.edges) for (let i = 1; i < edge.length; i += 1) preds.get(edge[i]).add(edge[i - 1]);
  const depth = new Map(names.map((n) => [n, 0]));
  for (let round = 0; round < names.length; round += 1) {
    let changed = false;
    for (const n of names) {
      for (const p of preds.get(n)) {
        if (depth.get(p) + 1 > depth.get(n)) {
          depth.set(n, depth.get(p) + 1);
          changed = true;
        }
      }
    }
    if (!changed) break;
  }
  const columns = [];
  for (const n of names) (columns[depth.get(n)] ||= []).push(n);
  return columns.filter(Boolean);
}

function paramList(params) {
  if (!params.length) return html`<div class="params empty">default parameters</div>`;
  return html`<dl class="params">${params.map(([k, v]) => {
    const text = valueText(v);
    const shown = text.length > 60 ? `${text.slice(0, 57)}…` : text;
    return html`<div><dt>${k}</dt><dd title="${text}">${shown}</dd></div>`;
  })}</dl>`;
}

function box(node, graphName = "") {
  const label = graphName && graphName !== node.className ? graphName : node.name && node.name !== node.className ? node.name : "";
  return html`<div class="step${node.inner.length ? " wrapper" : ""}" data-step="${node.className}" data-node="${graphName || node.name}">
    <div class="step-head"><span class="step-class">${node.className}</span>${label ? html`<span class="step-name">${label}</span>` : ""}</div>
    ${paramList(node.params)}
    ${node.inner.length ? html`<div class="step-inner">${node.inner.map((child) => drawNode(child))}</div>` : ""}
  </div>`;
}

function drawGraph(node) {
  const byName = new Map(node.graph.nodes.map((n) => [n.name, n.node]));
  const columns = layers(node.graph);
  const edges = [];
  for (const edge of node.graph.edges) for (let i = 1; i < edge.length; i += 1) edges.push([edge[i - 1], edge[i]]);
  const stepsOf = (name) => {
    const child = byName.get(name);
    if (!child) return box({ className: name, name: "", params: [], inner: [], graph: null });
    return child.graph ? html`<div class="step subgraph" data-node="${name}">${drawGraph(child)}</div>` : box(child, name);
  };
  return html`<div class="dag" data-edges="${JSON.stringify(edges)}">
    ${columns.map((names) => html`<div class="dag-col">${names.map(stepsOf)}</div>`)}
    <svg class="dag-edges" aria-hidden="true"></svg>
  </div>`;
}

function drawNode(node) {
  return node.graph ? drawGraph(node) : box(node);
}

/** The markup of a description's drawing (call `drawEdges` once it is in the page). */
export function pipelineMarkup(modelJson) {
  const root = parse(modelJson);
  if (!root) return html`<p class="muted">No model description.</p>`;
  return html`<div class="pipeline-scroll">${drawNode(root)}</div>`;
}

const SVG = "http://www.w3.org/2000/svg";

/** Draw the arrows of every graph inside `container` from the boxes' positions. */
export function drawEdges(container) {
  for (const dag of container.querySelectorAll(".dag")) {
    const svg = dag.querySelector(":scope > svg.dag-edges");
    const origin = dag.getBoundingClientRect();
    svg.setAttribute("width", String(dag.scrollWidth));
    svg.setAttribute("height", String(dag.scrollHeight));
    svg.replaceChildren();
    const defs = document.createElementNS(SVG, "defs");
    const marker = document.createElementNS(SVG, "marker");
    const id = `arrow-${Math.random().toString(36).slice(2)}`;
    for (const [k, v] of Object.entries({ id, viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" })) {
      marker.setAttribute(k, v);
    }
    const tip = document.createElementNS(SVG, "path");
    tip.setAttribute("d", "M 0 0 L 10 5 L 0 10 z");
    tip.setAttribute("class", "arrow-tip");
    marker.append(tip);
    defs.append(marker);
    svg.append(defs);
    const boxes = new Map();
    for (const element of dag.querySelectorAll(":scope > .dag-col > [data-node]")) boxes.set(element.dataset.node, element.getBoundingClientRect());
    for (const [from, to] of JSON.parse(dag.dataset.edges || "[]")) {
      const a = boxes.get(from);
      const b = boxes.get(to);
      if (!a || !b) continue;
      const x1 = a.right - origin.left;
      const y1 = a.top + Math.min(a.height / 2, 40) - origin.top;
      const x2 = b.left - origin.left - 2;
      const y2 = b.top + Math.min(b.height / 2, 40) - origin.top;
      const mid = (x1 + x2) / 2;
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`);
      path.setAttribute("class", "edge");
      path.setAttribute("marker-end", `url(#${id})`);
      svg.append(path);
    }
  }
}
