// The guard's screen: every decision at this node's gates as it is committed, pushed by the
// server (EventSource reconnects by itself; each connection starts with the whole state).
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("config").textContent);
  const t = config.t;
  const $ = (id) => document.getElementById(id);
  let shown = null; // the decision on the big panel: {event, pass}
  let snapshotTimer = null;

  function text(key, fallback) { return t[key] || fallback || key; }
  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "—"; }
  function day(iso) { return iso ? iso.slice(0, 10) : text("valid.open"); }

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

  function notice(message, good) {
    const n = $("notice");
    n.textContent = message || "";
    n.className = "notice " + (good ? "good" : "bad");
  }

  function setImage(img, caption, url, noneText) {
    if (url) {
      img.src = url; img.hidden = false; caption.textContent = "";
    } else {
      img.removeAttribute("src"); img.hidden = true; caption.textContent = noneText;
    }
  }

  // the big panel: a recorded decision ({event, pass}) or a check (checked = true)
  function show(detail, checked) {
    shown = detail;
    const event = detail.event;
    const p = detail.pass;
    const v = $("verdict");
    v.className = "verdict " + event.decision + (checked ? " checked" : "");
    $("verdict-word").textContent = text(event.decision);
    $("verdict-reason").textContent = text("reason." + event.reason, event.reason) +
      (event.stale ? " " + text("stale") : "");
    const where = [event.gate, event.reader, event.direction ? text(event.direction) : null]
      .filter(Boolean).join(" · ");
    $("verdict-meta").textContent = (checked ? text("guard.checked") + " · " : "") +
      when(event.ts) + " · " + where;
    $("f-name").textContent = (p && p.name) || event.holder || "—";
    $("f-unit").textContent = (p && p.unit) || "—";
    $("f-kind").textContent = p ? text("kind." + p.kind, p.kind) : "—";
    $("f-valid").textContent = p ? day(p.valid_from) + " — " + day(p.valid_until) : "—";
    $("f-card").textContent = event.card || (p && p.card) || "—";
    setImage($("photo"), $("photo-none"), p && p.photo_url, text("guard.photo.none"));
    const snap = event.snapshot && event.snapshot.url;
    setImage($("snapshot"), $("snapshot-cap"), snap, text("guard.snapshot.none"));
    $("confiscate").disabled = !(p && p.status === "active");
    // the camera's picture is taken just after the decision: ask again once it can be there
    clearTimeout(snapshotTimer);
    if (!checked && !snap && event.event_id) {
      snapshotTimer = setTimeout(async () => {
        try {
          const again = await api("GET", "/api/v1/events/" + encodeURIComponent(event.event_id));
          if (shown && shown.event.event_id === event.event_id && again.event.snapshot) {
            setImage($("snapshot"), $("snapshot-cap"), again.event.snapshot.url,
                     text("guard.snapshot.none"));
          }
        } catch (_e) { /* the picture stays "none" */ }
      }, 1500);
    }
  }

  function recentItem(detail) {
    const event = detail.event;
    const li = document.createElement("li");
    li.className = event.decision;
    li.dataset.eventId = event.event_id;
    const word = document.createElement("span");
    word.className = "word";
    word.textContent = text(event.decision);
    const who = document.createElement("span");
    who.textContent = ((detail.pass && detail.pass.name) || event.holder || event.card || "—") +
      " · " + text("reason." + event.reason, event.reason);
    const meta = document.createElement("small");
    meta.textContent = when(event.ts) + " · " + event.gate;
    li.append(word, who, meta);
    li.addEventListener("click", () => show(detail, false));
    return li;
  }

  function addRecent(detail) {
    const list = $("recent");
    list.prepend(recentItem(detail));
    while (list.children.length > 12) list.lastChild.remove();
  }

  // -- the live stream ---------------------------------------------------------------
  function connect() {
    const source = new EventSource("/console/stream");
    const live = $("live");
    source.addEventListener("open", () => {
      live.className = "live ok"; live.textContent = text("live.ok");
    });
    source.addEventListener("error", async () => {
      live.className = "live lost"; live.textContent = text("live.lost");
      if (source.readyState !== EventSource.CLOSED) return; // the browser retries by itself
      // refused (not unreachable): logged out, or the service restarted; else try again
      try {
        const probe = await fetch("/api/v1/events?limit=1", { credentials: "same-origin" });
        if (probe.status === 401) { window.location.href = "/login"; return; }
      } catch (_e) { /* unreachable: try again below */ }
      setTimeout(connect, 2000);
    });
    source.addEventListener("state", (m) => {
      const state = JSON.parse(m.data);
      const list = $("recent");
      list.replaceChildren(...state.recent.map(recentItem));
      if (state.recent.length && !shown) show(state.recent[0], false);
      document.body.dataset.live = "1";
    });
    source.addEventListener("decision", (m) => {
      const detail = JSON.parse(m.data);
      // what the last action said was about the last person (an opening by hand comes back
      // as its own decision, and keeps its notice)
      if (!detail.event.by) notice("");
      show(detail, false);
      addRecent(detail);
    });
    source.addEventListener("resync", () => { source.close(); setTimeout(connect, 200); });
    source.addEventListener("logout", () => { window.location.href = "/login"; });
  }

  // -- checking by hand or with a scanner: one field, focus always back in it --------
  const input = $("check-input");
  $("check-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    const body = value.startsWith("GH1.") ? { qr: value } : { card: value };
    try {
      const r = await api("POST", "/api/v1/check", body);
      show({
        event: { decision: r.decision, reason: r.reason, gate: r.gate, ts: r.at, card: r.card,
                 snapshot: null, holder: null },
        pass: r.pass,
      }, true);
      notice("");
    } catch (err) { notice(err.message, false); }
    input.focus();
  });

  $("confiscate").addEventListener("click", async () => {
    if (!shown || !shown.pass) return;
    const reason = window.prompt(text("guard.confiscate.reason"));
    if (!reason) { input.focus(); return; }
    try {
      await api("POST", "/api/v1/confiscations",
                { pass_id: shown.pass.id, reason, gate: shown.event.gate || undefined });
      shown.pass.status = "confiscated";
      $("confiscate").disabled = true;
      notice(text("guard.confiscated"), true);
    } catch (err) { notice(err.message, false); }
    input.focus();
  });

  $("open").addEventListener("click", async () => {
    const reason = window.prompt(text("guard.open.reason"));
    if (!reason) { input.focus(); return; }
    const gate = (shown && shown.event.gate) || config.gates[0];
    try {
      const r = await api("POST", "/api/v1/overrides", { gate, reason });
      notice(text(r.opened ? "guard.open.sent" : "guard.open.not_sent"), r.opened);
    } catch (err) { notice(err.message, false); }
    input.focus();
  });

  document.addEventListener("click", (e) => {
    if (!(e.target instanceof HTMLButtonElement) && e.target !== input) input.focus();
  });
  connect();
})();
