// The control room's board: the open alarms, pushed by the server as they change
// (EventSource reconnects by itself; each connection starts with the whole queue).
"use strict";
(function () {
  const { config, $, text, when, api, notice, live } = window.Gatehouse;
  const open = new Map(); // id -> alarm, as GET /api/v1/alarms shows it
  let total = 0;
  let selected = null;
  let audio = null;

  function kind(a) { return text("alarm." + a.type, a.type); }
  function where(a) {
    return [a.location, a.floor && a.floor + "F", a.room, a.gate].filter(Boolean).join(" · ") ||
      a.source;
  }
  function unacked(a) { return !a.acked && a.isa_state !== "shelved"; }

  // -- the queue ---------------------------------------------------------------------
  function item(a) {
    const li = document.createElement("li");
    li.dataset.id = a.id;
    li.className = "p" + a.priority + (unacked(a) ? " unacked" : "") +
      (a.id === selected ? " selected" : "");
    const p = document.createElement("span");
    p.className = "p";
    p.textContent = a.priority;
    const what = document.createElement("strong");
    what.textContent = kind(a) + (a.count > 1 ? " ×" + a.count : "");
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = text("isa." + a.isa_state, a.isa_state) +
      (a.escalation_level ? " · " + text("control.escalated") + " " + a.escalation_level : "");
    const meta = document.createElement("small");
    meta.textContent = when(a.raised_at) + " · " + where(a);
    li.append(p, what, tag, meta);
    li.addEventListener("click", () => select(a.id));
    return li;
  }

  function render() {
    const all = [...open.values()].sort((x, y) =>
      x.priority - y.priority || (x.raised_at < y.raised_at ? -1 : 1) || x.id - y.id);
    const lists = { queue: [], standing: [], shelved: [] };
    for (const a of all) {
      const list = a.isa_state === "shelved" ? "shelved" : a.standing ? "standing" : "queue";
      lists[list].push(item(a));
    }
    for (const [id, items] of Object.entries(lists)) $(id).replaceChildren(...items);
    $("queue-none").hidden = all.length > 0;
    $("queue-count").textContent = text("control.shown_of")
      .replace("{shown}", all.length).replace("{total}", Math.max(total, all.length));
    sound(all.some((a) => a.priority === 1 && unacked(a)));
  }

  // -- the sound: a P1 alarm nobody has acknowledged beeps until someone does ----------
  function sound(on) {
    document.body.dataset.sounding = on ? "1" : "0";
  }
  setInterval(() => {
    if (document.body.dataset.sounding !== "1" || !audio || audio.state !== "running") return;
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.frequency.value = 880;
    gain.gain.value = 0.3;
    tone.connect(gain).connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.35);
  }, 1000);
  // browsers start sound only after a click on the page: one click on this button
  $("sound").addEventListener("click", async () => {
    audio = audio || new AudioContext();
    await audio.resume();
    $("sound").textContent = text("control.sound.ready");
    $("sound").classList.add("on");
  });

  // -- one alarm ----------------------------------------------------------------------
  async function select(id) {
    selected = id;
    render();
    let a;
    try { a = await api("GET", "/api/v1/alarms/" + id); } catch (err) { notice(err.message); return; }
    if (selected !== id) return;
    $("detail-none").hidden = true;
    $("detail-body").hidden = false;
    $("d-title").textContent = "P" + a.priority + " " + kind(a) + (a.count > 1 ? " ×" + a.count : "");
    $("d-where").textContent = where(a);
    $("d-raised").textContent = when(a.raised_at);
    $("d-state").textContent = text("state." + a.state, a.state) + " · " +
      text("isa." + a.isa_state, a.isa_state) +
      (a.dispatched_to ? " · " + text("control.dispatched") + " " + a.dispatched_to : "");
    // a help request's stages: when each is due, met, or overdue (shown in red)
    $("d-deadlines").replaceChildren(...(a.deadlines.length ? a.deadlines.map((d) => {
      const span = document.createElement("span");
      span.className = d.overdue && !d.met_at ? "overdue" : "";
      span.textContent = text("deadline." + d.stage, d.stage) + " " + when(d.due_at).slice(11, 16) +
        (d.met_at ? " ✓" + when(d.met_at).slice(11, 16) : d.overdue ? " " + text("control.overdue") : "") + "　";
      return span;
    }) : [document.createTextNode("—")]));
    $("d-ack").disabled = a.acked || a.state === "closed";
    $("d-steps").replaceChildren(...a.checklist.map((s) => {
      const li = document.createElement("li");
      li.className = s.done_at ? "done" : "";
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = text("step." + s.step, s.step) + (s.done_at ? "  (" + s.by + " " + when(s.done_at).slice(11) + ")" : "");
      b.disabled = !!s.done_at || a.state === "closed";
      b.addEventListener("click", () => act(() => api("POST", "/api/v1/alarms/" + id + "/steps/" + s.id)));
      li.append(b);
      return li;
    }));
    const snap = a.snapshot && a.snapshot.url;
    const img = $("d-snapshot");
    if (snap) { img.src = snap; img.hidden = false; } else { img.hidden = true; }
    $("d-context").replaceChildren(...a.context.map((e) => {
      const li = document.createElement("li");
      li.textContent = when(e.ts) + " " + text(e.decision) + " · " + (e.holder || e.card || "—") +
        " · " + text("reason." + e.reason, e.reason);
      return li;
    }));
    $("d-history").replaceChildren(...a.history.map((h) => {
      const li = document.createElement("li");
      li.textContent = when(h.at) + " " + (h.by || "") + " " + h.action + (h.detail ? ": " + h.detail : "");
      return li;
    }));
    // what reached people off the box (docs/notify.md): a message still waiting after a
    // failure is in red, with the channel's error
    $("d-notifications").replaceChildren(...(a.notifications.length ? a.notifications.map((n) => {
      const li = document.createElement("li");
      li.className = n.state === "queued" && n.error ? "overdue" : "";
      li.textContent = n.channel + " · " + text("notify.event." + n.event, n.event) +
        (n.level ? " " + n.level : "") + " · " + text("notify.state." + n.state, n.state) + " " +
        when(n.sent_at || n.queued_at).slice(11) + (n.error ? " · " + n.error : "");
      return li;
    }) : [document.createTextNode("—")]));
  }

  async function act(fn) {
    try { await fn(); notice(""); } catch (err) { notice(err.message); }
    if (selected !== null) select(selected);
  }

  $("d-ack").addEventListener("click", () => act(() => api("POST", "/api/v1/alarms/" + selected + "/ack")));
  $("d-dispatch").addEventListener("click", () => {
    const to = window.prompt(text("control.dispatch.to"));
    if (to) act(() => api("POST", "/api/v1/alarms/" + selected + "/dispatch", { to }));
  });
  $("d-shelve").addEventListener("click", () => {
    const minutes = parseInt(window.prompt(text("control.shelve.minutes"), "30"), 10);
    if (!minutes) return;
    const reason = window.prompt(text("control.shelve.reason"));
    if (reason) act(() => api("POST", "/api/v1/alarms/" + selected + "/shelve", { minutes, reason }));
  });
  const code = $("d-code");
  code.replaceChildren(...config.resolutions.map((r) => new Option(text("resolution." + r, r), r)));
  $("d-resolve").addEventListener("submit", (e) => {
    e.preventDefault();
    const notes = $("d-notes").value.trim() || undefined;
    act(() => api("POST", "/api/v1/alarms/" + selected + "/resolve", { resolution: code.value, notes }));
    $("d-notes").value = "";
  });

  // -- 紧急事件处理记录表: the emergency record of the selected alarm ----------------------
  const emergency = $("emergency");
  $("d-emergency").addEventListener("click", () => {
    $("e-alarm").textContent = "#" + selected;
    $("e-notice").textContent = "";
    emergency.showModal();
  });
  $("emergency-close").addEventListener("click", () => emergency.close());
  $("emergency-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = {};
    for (const f of ["cause", "responsible", "remedial", "preventive", "results"]) {
      const v = $("e-" + f).value.trim();
      if (v) body[f] = v;
    }
    try {
      await api("POST", "/api/v1/alarms/" + selected + "/emergency-record", body);
      $("e-notice").textContent = text("emergency.saved");
      $("e-notice").className = "notice good";
    } catch (err) {
      $("e-notice").textContent = err.message;
      $("e-notice").className = "notice bad";
    }
  });

  const helpType = $("help-type");
  helpType.replaceChildren(...config.help_types.map((h) => new Option(text("alarm." + h, h), h)));
  $("help-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { type: helpType.value };
    for (const f of ["floor", "room", "notes"]) {
      const v = $("help-" + f).value.trim();
      if (v) body[f] = v;
    }
    try {
      const a = await api("POST", "/api/v1/alarms", body);
      for (const f of ["floor", "room", "notes"]) $("help-" + f).value = "";
      select(a.id);
    } catch (err) { notice(err.message); }
  });

  // -- a gate held open (a fire) or locked (a robbery), with the reason ------------------
  async function modeNow() {
    const gate = $("mode-gate").value;
    try {
      const m = await api("GET", "/api/v1/gates/" + encodeURIComponent(gate) + "/mode");
      $("mode-now").textContent = gate + " · " + text("mode." + m.mode, m.mode)
        + (m.reason ? " · " + m.reason + " (" + m.set_by + ")" : "");
    } catch (err) { $("mode-now").textContent = err.message; }
  }
  $("mode-gate").addEventListener("change", modeNow);
  $("mode-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { mode: $("mode-mode").value, reason: $("mode-reason").value.trim() };
    if ($("mode-until").value) body.until = $("mode-until").value;
    try {
      await api("PUT", "/api/v1/gates/" + encodeURIComponent($("mode-gate").value) + "/mode", body);
      $("mode-reason").value = "";
      $("mode-until").value = "";
      modeNow();
    } catch (err) { $("mode-now").textContent = err.message; }
  });
  modeNow();

  // -- the live stream ---------------------------------------------------------------
  function connect() {
    live("/console/stream?view=control", "/api/v1/alarms?limit=1", {
      state: (state) => {
        open.clear();
        for (const a of state.alarms) open.set(a.id, a);
        total = state.total;
        render();
      },
      alarm: (a) => {
        const known = open.has(a.id);
        if (a.state === "closed") { open.delete(a.id); } else { open.set(a.id, a); }
        if (!known && a.state !== "closed") total += 1;
        if (known && a.state === "closed") total -= 1;
        render();
        if (a.id === selected) select(a.id);
      },
    });
  }
  connect();
})();
