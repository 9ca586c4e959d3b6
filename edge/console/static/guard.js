// The guard's screen: every decision at this node's gates as it is committed, pushed by the
// server (EventSource reconnects by itself; each connection starts with the whole state).
"use strict";
(function () {
  const { config, $, text, when, api, notice, live } = window.Gatehouse;
  let shown = null; // the decision on the big panel: {event, pass}
  let snapshotTimer = null;

  function day(iso) { return iso ? iso.slice(0, 10) : text("valid.open"); }

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
    if (config.cameras && !checked && !snap && event.event_id) {
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

  // -- goods release slips: typed or scanned into the same field ----------------------
  let slip = null; // the slip on screen, and its signed QR if it came by one
  let slipQr = null;

  function showSlip(s, qrText) {
    slip = s; slipQr = qrText || null;
    $("slip").hidden = false;
    document.querySelector(".holder").hidden = true;
    $("s-number").textContent = s.number;
    $("s-signed").textContent = s.signed ? text("slip.signed") : "";
    const status = $("s-status");
    status.textContent = text("slip.status." + s.status, s.status);
    status.className = "slip-status " + (s.status === "issued" ? "ok" : "bad");
    $("s-unit").textContent = s.unit || "—";
    $("s-owner").textContent = s.owner || "—";
    $("s-bearer").textContent = s.bearer || "—";
    $("s-auth").textContent = s.authorisation ? text("slip.auth." + s.authorisation) : "—";
    $("s-valid").textContent = s.valid_from ? when(s.valid_from) + " — " + when(s.valid_until) : "—";
    $("s-closed").textContent = s.closed_by ? s.closed_by + " · " + when(s.closed_at) +
      (s.gate ? " · " + s.gate : "") : "—";
    $("s-items").replaceChildren(...(s.items || []).map((i) => {
      const li = document.createElement("li");
      li.textContent = i.name + " × " + i.qty + (i.hazard ? " (" + i.hazard + ")" : "");
      return li;
    }));
    const open = s.status === "issued";
    $("s-release").disabled = !open;
    $("s-reject").disabled = !open;
  }

  function hideSlip() {
    slip = null; slipQr = null;
    $("slip").hidden = true;
    document.querySelector(".holder").hidden = false;
  }

  async function slipAction(action, body) {
    try {
      const s = await api("POST", "/api/v1/slips/" + encodeURIComponent(slip.number) + "/" + action, body);
      showSlip(s, null);
      notice(text(action === "release" ? "slip.released" : "slip.rejected"), true);
    } catch (err) { notice(err.message, false); }
    input.focus();
  }

  $("s-release").addEventListener("click", () => {
    if (slip) slipAction("release", slipQr ? { qr: slipQr } : {});
  });
  $("s-reject").addEventListener("click", () => {
    const reason = window.prompt(text("slip.reject.reason"));
    if (slip && reason) slipAction("reject", { reason });
    else input.focus();
  });

  // -- visitors ------------------------------------------------------------------------
  const dialog = $("visitors");
  async function listVisitors() {
    let found;
    try { found = await api("GET", "/api/v1/visitors?inside=true&limit=100"); } catch (err) {
      $("v-notice").textContent = err.message; return;
    }
    const waiting = await api("GET", "/api/v1/visitors?limit=100").catch(() => ({ items: [] }));
    const shown = [...waiting.items.filter((v) => v.state === "waiting"), ...found.items];
    const list = $("v-list");
    if (!shown.length) { list.replaceChildren(Object.assign(document.createElement("li"), { textContent: text("visitor.none") })); return; }
    list.replaceChildren(...shown.map((v) => {
      const li = document.createElement("li");
      const who = document.createElement("span");
      who.textContent = v.name + " → " + v.host_unit + (v.card ? " · " + v.card : "") + " · " +
        (v.state === "waiting" ? text("visitor.waiting") : when(v.entered_at));
      li.append(who);
      if (v.state === "waiting") {
        for (const how of ["intercom", "phone", "in_person"]) {
          const b = document.createElement("button");
          b.type = "button";
          b.textContent = text("visitor.confirm") + "（" + text("visitor.how." + how) + "）";
          b.addEventListener("click", async () => {
            try { await api("POST", "/api/v1/visitors/" + v.id + "/confirm", { how }); } catch (err) { $("v-notice").textContent = err.message; }
            listVisitors();
          });
          li.append(b);
        }
      } else {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = text("visitor.exit");
        b.addEventListener("click", async () => {
          try { await api("POST", "/api/v1/visitors/" + v.id + "/exit"); } catch (err) { $("v-notice").textContent = err.message; }
          listVisitors();
        });
        li.append(b);
      }
      return li;
    }));
  }
  async function listUnits() { // the estate's units, offered as the host's unit is typed
    const found = await api("GET", "/api/v1/visitors/units").catch(() => ({ items: [] }));
    $("units-list").replaceChildren(...found.items.map((u) => Object.assign(document.createElement("option"), { value: u })));
  }
  async function listExpected() { // today's announced visitors (预约访客)
    const found = await api("GET", "/api/v1/visitors/expected").catch(() => ({ items: [] }));
    const list = $("e-list");
    if (!found.items.length) { list.replaceChildren(Object.assign(document.createElement("li"), { textContent: text("visitor.none") })); return; }
    list.replaceChildren(...found.items.map((e) => {
      const li = document.createElement("li");
      li.className = e.state;
      li.textContent = e.name + " → " + e.host_unit + " · " + text("visitor.category." + e.category, e.category) + " · " +
        when(e.valid_from).slice(11, 16) + "–" + when(e.valid_until).slice(11, 16) + " · " + e.used + "/" + e.entries + " · " +
        text("visitor.state." + e.state, e.state);
      return li;
    }));
  }
  $("arrive-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const v = await api("POST", "/api/v1/visitors/arrive", { code: $("v-code").value.trim() });
      notice(text("visitor.arrived") + " " + v.name + " → " + v.host_unit, true, "a-notice");
      $("v-code").value = "";
    } catch (err) { notice(err.message, false, "a-notice"); }
    listExpected(); listVisitors();
  });
  $("visitors-open").addEventListener("click", () => { dialog.showModal(); $("v-host").focus(); listVisitors(); listUnits(); listExpected(); });
  $("visitors-close").addEventListener("click", () => { dialog.close(); input.focus(); });
  $("visitor-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { host_unit: $("v-host").value.trim(), name: $("v-name").value.trim() };
    for (const [field, id] of [["id_number", "v-id"], ["purpose", "v-purpose"], ["plate", "v-plate"], ["card", "v-card"]]) {
      const v = $(id).value.trim();
      if (v) body[field] = v;
    }
    try {
      await api("POST", "/api/v1/visitors", body);
      for (const id of ["v-host", "v-name", "v-id", "v-purpose", "v-plate", "v-card"]) $(id).value = "";
      $("v-notice").textContent = text("visitor.registered");
      $("v-notice").className = "notice good";
    } catch (err) {
      $("v-notice").textContent = err.message;
      $("v-notice").className = "notice bad";
    }
    listVisitors();
    $("v-host").focus();
  });

  // -- key loans (钥匙借用) ----------------------------------------------------------------
  const keysDialog = $("keys");
  const pad = $("k-sign");
  const ink = pad.getContext("2d");
  let signed = false;
  function clearPad() {
    ink.fillStyle = "#fff"; ink.fillRect(0, 0, pad.width, pad.height);
    ink.strokeStyle = "#000"; ink.lineWidth = 3; ink.lineCap = "round"; signed = false;
  }
  function at(e) {
    const box = pad.getBoundingClientRect();
    return [(e.clientX - box.left) * pad.width / box.width, (e.clientY - box.top) * pad.height / box.height];
  }
  pad.addEventListener("pointerdown", (e) => {
    pad.setPointerCapture(e.pointerId); ink.beginPath(); ink.moveTo(...at(e));
  });
  pad.addEventListener("pointermove", (e) => {
    if (!pad.hasPointerCapture(e.pointerId)) return;
    ink.lineTo(...at(e)); ink.stroke(); signed = true;
  });
  $("k-clear").addEventListener("click", clearPad);

  function keyNotice(message, good) { notice(message, good, "k-notice"); }
  async function act(path, body) {
    try { await api("POST", path, body); } catch (err) { keyNotice(err.message, false); }
    listKeys();
  }
  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.addEventListener("click", onClick);
    return b;
  }
  async function listKeys() {
    let cabinet, loans;
    try {
      [cabinet, loans] = await Promise.all([api("GET", "/api/v1/keys"), api("GET", "/api/v1/key-loans?open=true&limit=200")]);
    } catch (err) { keyNotice(err.message, false); return; }
    const chosen = $("k-key").value;
    $("k-key").replaceChildren(...cabinet.items.filter((k) => !k.retired_at).map((k) => {
      const o = document.createElement("option");
      o.value = k.id;
      o.textContent = k.id + " " + k.label + "（" + text("keys.in_cabinet") + " " + k.in_cabinet + "/" + k.quantity + "）";
      o.disabled = k.in_cabinet < 1;
      return o;
    }));
    if (chosen) $("k-key").value = chosen;
    const list = $("k-list");
    if (!loans.items.length) { list.replaceChildren(Object.assign(document.createElement("li"), { textContent: text("keys.none") })); return; }
    list.replaceChildren(...loans.items.map((l) => {
      const li = document.createElement("li");
      li.className = l.state;
      const what = document.createElement("span");
      what.textContent = l.key + " " + l.label + " ×" + l.quantity + " · " + l.borrower + " " + l.phone +
        " · " + text("keys.due") + " " + when(l.due_at) + " · " + text("keys.state." + l.state);
      li.append(what);
      const base = "/api/v1/key-loans/" + l.id;
      if (l.state === "inspecting") {
        li.append(button(text("keys.inspect.ok"), () => {
          const inspector = window.prompt(text("keys.inspector"));
          if (inspector) act(base + "/inspection", { ok: true, inspected_by: inspector });
        }), button(text("keys.inspect.bad"), () => {
          const inspector = window.prompt(text("keys.inspector"));
          const notes = inspector && window.prompt(text("keys.inspect.notes"));
          if (notes) act(base + "/inspection", { ok: false, inspected_by: inspector, notes });
        }));
      } else {
        li.append(button(text("keys.return"), () => {
          const count = window.prompt(text("keys.count"), String(l.quantity));
          if (count !== null) act(base + "/return", { count: Number(count) });
        }), button(text("keys.lost"), () => {
          const count = window.prompt(text("keys.lost.count"), String(l.quantity));
          if (count !== null) act(base + "/lost", { count: Number(count) });
        }));
      }
      return li;
    }));
  }
  $("keys-open").addEventListener("click", () => { keysDialog.showModal(); clearPad(); listKeys(); });
  $("keys-close").addEventListener("click", () => { keysDialog.close(); input.focus(); });
  $("key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!signed) { keyNotice(text("keys.sign.missing"), false); return; }
    try {
      // the signature first, as a picture: the loan names it
      const png = await new Promise((done) => pad.toBlob(done, "image/png"));
      const response = await fetch("/api/v1/key-loans/signatures", {
        method: "POST", credentials: "same-origin", body: png,
        headers: { "Content-Type": "image/png", "X-CSRF-Token": config.csrf },
      });
      const sig = await response.json().catch(() => null);
      if (!response.ok) throw new Error(window.Gatehouse.refusal(response.status, sig));
      const body = {
        key: $("k-key").value, quantity: Number($("k-quantity").value), borrower: $("k-borrower").value.trim(),
        borrower_kind: $("k-kind").value, phone: $("k-phone").value.trim(), reason: $("k-reason").value.trim(),
        signature: sig.signature,
      };
      for (const [field, id] of [["company", "k-company"], ["approved_by", "k-approved"]]) {
        const v = $(id).value.trim();
        if (v) body[field] = v;
      }
      await api("POST", "/api/v1/key-loans", body);
      for (const id of ["k-borrower", "k-company", "k-phone", "k-reason", "k-approved"]) $(id).value = "";
      $("k-quantity").value = "1";
      clearPad();
      keyNotice(text("keys.lent"), true);
    } catch (err) { keyNotice(err.message, false); }
    listKeys();
  });

  // -- the workers still inside after the end of work ([permits] work_ends) ---------------
  async function workersInside() {
    let found;
    try { found = await api("GET", "/api/v1/workers/inside"); } catch (_err) { return; }
    const now = new Date();
    const [hh, mm] = found.work_ends.split(":").map(Number);
    const over = now.getHours() * 60 + now.getMinutes() >= hh * 60 + mm;
    $("workers").hidden = !(over && found.items.length);
    $("workers-ends").textContent = text("workers.after") + " " + found.work_ends;
    $("workers-list").replaceChildren(...found.items.map((w) => Object.assign(document.createElement("li"), {
      textContent: w.name + " · " + (w.unit || "—") + (w.permit_no ? " · " + w.permit_no : "") + " · " + text("workers.in") + " " + when(w.in_at).slice(11, 16),
    })));
  }
  workersInside();
  setInterval(workersInside, 60000);

  // -- a gate held open or locked by the control room (edge.modes), in red at the top ----
  const modes = new Map();
  function showModes() {
    const now = new Date();
    const shown = [...modes.values()].filter((m) => m.mode !== "normal" && (!m.until || new Date(m.until) > now));
    $("modes").hidden = !shown.length;
    $("modes-list").replaceChildren(...shown.map((m) => Object.assign(document.createElement("li"), {
      textContent: m.gate + " · " + text("mode." + m.mode, m.mode) + " · " + m.reason + " (" + m.set_by + ")"
        + (m.until ? " · " + text("mode.until") + " " + when(m.until).slice(5, 16) : ""),
    })));
  }

  // -- the live stream ---------------------------------------------------------------
  function connect() {
    live("/console/stream?view=guard", "/api/v1/events?limit=1", {
      state: (state) => {
        $("recent").replaceChildren(...state.recent.map(recentItem));
        if (state.recent.length && !shown) show(state.recent[0], false);
        modes.clear();
        for (const m of state.modes) modes.set(m.gate, m);
        showModes();
      },
      mode: (m) => { modes.set(m.gate, m); showModes(); },
      decision: (detail) => {
        // what the last action said was about the last person (an opening by hand comes
        // back as its own decision, and keeps its notice)
        if (!detail.event.by) notice("");
        hideSlip();
        show(detail, false);
        addRecent(detail);
      },
    });
  }

  // -- checking by hand or with a scanner: one field, focus always back in it --------
  const input = $("check-input");
  $("check-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    if (/^F[XO]-/i.test(value)) { // a goods release slip's number (gate's or office's)
      try {
        showSlip(await api("GET", "/api/v1/slips/" + encodeURIComponent(value.toUpperCase())), null);
        notice("");
      } catch (err) { notice(err.message, false); }
      input.focus();
      return;
    }
    const body = value.startsWith("GH1.") ? { qr: value } : { card: value };
    try {
      const r = await api("POST", "/api/v1/check", body);
      if (r.slip) { // an office-signed slip's QR: its number and what it allows
        showSlip(await api("GET", "/api/v1/slips/" + encodeURIComponent(r.slip.number))
          .catch(() => ({ ...r.slip, status: r.reason === "ok" ? "issued" : r.reason })), value);
        input.focus();
        return;
      }
      hideSlip();
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
    if (dialog.open || keysDialog.open) return; // the dialogs' forms have fields of their own
    if (!(e.target instanceof HTMLButtonElement) && e.target !== input) input.focus();
  });
  connect();
})();
