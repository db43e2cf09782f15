// The dashboard's shell: hash routing, the API key form (shown when a call
// answers 401), errors. Pages live in their own modules.

import { ApiError, apiKey, onUnauthorized, setApiKey } from "./api.js";
import { comparePage } from "./compare.js";
import { experimentPage, homePage, runsPage } from "./lists.js";
import { modelPage } from "./model.js";
import { runPage } from "./run.js";
import { html, render } from "./util.js";

const main = document.getElementById("app");
const errorBox = document.getElementById("error");
const auth = document.getElementById("auth");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("api-key");
const keyMessage = document.getElementById("key-message");
const keyButton = document.getElementById("key-button");

let generation = 0;
let cleanup = null;

const ID = /^[A-Za-z0-9_-]{1,128}$/;

function parseHash() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const at = hash.indexOf("?");
  const path = at < 0 ? hash : hash.slice(0, at);
  const query = new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
  let parts;
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = ["?"];
  }
  return { parts, query };
}

function showError(error) {
  if (error instanceof ApiError && error.status === 401) return; // the key form says it
  const message = error && error.message ? error.message : String(error);
  const extra = error instanceof ApiError ? error.violations : [];
  const id = error instanceof ApiError ? error.requestId : "";
  render(
    errorBox,
    html`<strong>${error instanceof ApiError ? `Error ${error.status || ""}` : "Error"}</strong> ${message}
      ${extra.length ? html`<ul>${extra.map((v) => html`<li>${v}</li>`)}</ul>` : ""}
      ${id ? html`<div class="muted small">request id <code>${id}</code></div>` : ""}
      <button type="button" class="close" aria-label="Dismiss">×</button>`,
  );
  errorBox.hidden = false;
}

errorBox.addEventListener("click", (event) => {
  if (event.target.closest(".close")) errorBox.hidden = true;
});

function notFound(root) {
  render(root, html`<div class="banner info">No such page. <a href="#/">Back to the experiments</a>.</div>`);
}

/** Leave the current page: stop its streams and timers, ignore its late answers. */
function leave() {
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
  }
  cleanup = null;
  generation += 1;
}

function route() {
  leave();
  const mine = generation;
  const page = {
    gone: () => mine !== generation,
    error: (error) => {
      if (mine === generation) showError(error);
    },
  };
  errorBox.hidden = true;
  const { parts, query } = parseHash();
  const [kind, id] = parts;
  if (id !== undefined && !ID.test(id)) return notFound(main);
  let section = "experiments";
  if (!kind || (kind === "experiments" && !id)) cleanup = homePage(main, page);
  else if (kind === "experiments") cleanup = experimentPage(main, id, page);
  else if (kind === "runs" && !id) {
    section = "runs";
    cleanup = runsPage(main, page, query);
  } else if (kind === "runs") {
    section = "runs";
    cleanup = runPage(main, id, page);
  } else if (kind === "models" && id) {
    section = "runs";
    cleanup = modelPage(main, id, page);
  } else if (kind === "compare" && id) {
    section = "runs";
    cleanup = comparePage(main, id, page, query);
  } else notFound(main);
  for (const link of document.querySelectorAll("header nav a[data-section]")) {
    link.classList.toggle("on", link.dataset.section === section);
  }
  window.scrollTo(0, 0);
}

// ---------------------------------------------------------------- API key

function showKeyForm(message) {
  keyMessage.textContent = message;
  auth.hidden = false;
  keyInput.value = "";
  keyInput.focus();
}

function drawKeyButton() {
  keyButton.textContent = apiKey() ? "API key ✓" : "API key";
  keyButton.title = apiKey() ? "An API key is kept in this browser; click to change or forget it" : "Set an API key";
}

let asked = false;
onUnauthorized((error) => {
  if (asked) return;
  asked = true;
  leave();
  main.replaceChildren();
  showKeyForm(
    apiKey()
      ? `The server refused the API key kept in this browser (${error.message}). Enter another one.`
      : "This server needs an API key.",
  );
});

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return;
  setApiKey(key);
  auth.hidden = true;
  asked = false;
  drawKeyButton();
  route();
});

document.getElementById("forget-key").addEventListener("click", () => {
  setApiKey("");
  auth.hidden = true;
  asked = false;
  drawKeyButton();
  route();
});

document.getElementById("cancel-key").addEventListener("click", () => {
  auth.hidden = true;
});

keyButton.addEventListener("click", () => {
  showKeyForm(apiKey() ? "A key is kept in this browser. Enter a new one, or forget it." : "Enter an API key.");
});

window.addEventListener("hashchange", () => {
  asked = false;
  route();
});
drawKeyButton();
route();
