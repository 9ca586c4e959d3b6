// What every page of the console shares: its config (from the page), its words, and calls
// to the API with the session's CSRF token. Loaded before the page's own script.
"use strict";
window.Gatehouse = (function () {
  const config = JSON.parse(document.getElementById("config").textContent);
  const t = config.t;
  const $ = (id) => document.getElementById(id);

  function text(key, fallback) { return t[key] || fallback || key; }
  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "—"; }

  // A refusal in the reader's words: its kind, then the service's detail (in Chinese where
  // the service has it: `detail_zh`; `detail` is the API's English contract)
  const chinese = document.documentElement.lang.startsWith("zh");
  function refusal(status, data) {
    const kind = text("error." + status, text("error"));
    const detail = data && ((chinese && data.detail_zh) || data.detail);
    return kind + (detail ? "：" + detail : " (" + status + ")");
  }

  // JSON in and out; a refusal throws with the service's own words
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
    if (!response.ok) throw new Error(refusal(response.status, data));
    return data;
  }

  function notice(message, good, id) {
    const n = $(id || "notice");
    n.textContent = message || "";
    n.className = "notice " + (good ? "good" : "bad");
  }

  // The page's live stream: `handlers` take each named event's data. The badge `#live`
  // says whether it is up; the browser reconnects by itself, and every connection starts
  // with the whole state. A refused stream (logged out, or the service restarted) goes to
  // the login; `probe` is a GET the page's role may make, to tell refused from unreachable.
  function live(url, probe, handlers) {
    function connect() {
      const source = new EventSource(url);
      const badge = $("live");
      source.addEventListener("open", () => {
        badge.className = "live ok"; badge.textContent = text("live.ok");
      });
      source.addEventListener("error", async () => {
        badge.className = "live lost"; badge.textContent = text("live.lost");
        if (source.readyState !== EventSource.CLOSED) return; // the browser retries
        try {
          const answer = await fetch(probe, { credentials: "same-origin" });
          if (answer.status === 401) { window.location.href = "/login"; return; }
        } catch (_e) { /* unreachable: try again below */ }
        setTimeout(connect, 2000);
      });
      for (const [name, handle] of Object.entries(handlers)) {
        source.addEventListener(name, (m) => {
          handle(JSON.parse(m.data));
          if (name === "state") document.body.dataset.live = "1";
        });
      }
      source.addEventListener("resync", () => { source.close(); setTimeout(connect, 200); });
      source.addEventListener("logout", () => { window.location.href = "/login"; });
    }
    connect();
  }

  return { config, t, $, text, when, api, refusal, notice, live };
})();
