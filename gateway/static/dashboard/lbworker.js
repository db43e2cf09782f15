// Reads every page of a run's leaderboard off the main thread (a module
// worker), so that thousands of models download and parse while the page
// draws; posts each page as compact rows.

import { rowOf } from "./leaderboard.js";

self.onmessage = async (event) => {
  const { path, key, pageSize } = event.data;
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  let token = "";
  let first = true;
  let later = [];
  let last = null;
  try {
    do {
      const params = new URLSearchParams({ pageSize: String(pageSize) });
      if (token) params.set("pageToken", token);
      const response = await fetch(`/v1/${path}?${params}`, { headers });
      if (!response.ok) {
        let body = null;
        try {
          body = await response.json();
        } catch {
          body = null;
        }
        self.postMessage({ error: { status: response.status, body } });
        return;
      }
      const answer = await response.json();
      const rows = (answer.entries || []).map((entry) => rowOf(entry.modelResult, answer.metric));
      last = { metric: answer.metric, higherIsBetter: answer.higherIsBetter, totalSize: answer.totalSize };
      // The first page (the best rows) at once; the others together at the
      // end, so that the page sorts and draws once more, not once per page.
      if (first) self.postMessage({ ...last, rows });
      else later = later.concat(rows);
      first = false;
      token = answer.nextPageToken || "";
    } while (token);
    self.postMessage({ ...last, rows: later, done: true });
  } catch (error) {
    self.postMessage({ error: { status: 0, body: { error: { message: String((error && error.message) || error) } } } });
  }
};
