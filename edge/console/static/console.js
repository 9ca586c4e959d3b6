// What every page of the console shares: its config (from the page), its words, and calls
// to the API with the session's CSRF token. Loaded before the page's own script.
"use strict";
window.Gatehouse = (function () {
  const config = JSON.parse(document.getElementById("config").textContent);
  const t = config.t;
  const $ = (id) => document.getElementById(id);

  function text(key, fallback) { return t[key] || fallback || key; }
  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "—"; }

  // JSON in and out; a refusal throws with the service's own words (its `detail`)
  async function api(method, path, body) {
    const response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": config.csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await response.json(); } catch (_e) { data = null; }
    if (response.status === 401) { window.location.href = "/login"; }
    if (!response.ok) {
      throw new Error((data && data.detail) || (text("error") + " (" + response.status + ")"));
    }
    return data;
  }

  function notice(message, good, id) {
    const n = $(id || "notice");
    n.textContent = message || "";
    n.className = "notice " + (good ? "good" : "bad");
  }

  return { config, t, $, text, when, api, notice };
})();
