// The duty log of the day and the shift handover: made from live state by the outgoing
// officer, signed by them, then by the incoming officer (another login).
"use strict";
(function () {
  const { config, $, text, api, notice } = window.Gatehouse;
  let current = null; // the handover shown

  function when(iso) { return iso ? iso.replace("T", " ").slice(0, 16) : "—"; }
  function li(content) { return Object.assign(document.createElement("li"), { textContent: content }); }

  // -- the duty log --------------------------------------------------------------------
  $("log-category").replaceChildren(...config.categories.map((c) => new Option(text("category." + c, c), c)));
  async function loadLog() {
    const log = await api("GET", "/api/v1/duty-log");
    $("log").replaceChildren(...(log.items.length ? log.items.map((e) =>
      li(when(e.at).slice(11) + " " + e.by + " [" + text("category." + e.category, e.category) + "] " + e.text))
      : [li(text("duty.none"))]));
  }
  $("log-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("POST", "/api/v1/duty-log", { category: $("log-category").value, text: $("log-text").value.trim() });
      $("log-text").value = "";
    } catch (err) { notice(err.message); }
    loadLog();
  });

  // -- the handover ----------------------------------------------------------------------
  const items = Object.entries(config.post_items);
  $("items").replaceChildren(...items.map(([name, expected]) => {
    const label = document.createElement("label");
    label.textContent = name + " ";
    const input = Object.assign(document.createElement("input"), { type: "number", min: "0", value: expected, size: 4 });
    input.dataset.item = name;
    label.append(input);
    return label;
  }));

  function section(title, rows) {
    const h = Object.assign(document.createElement("h4"), { textContent: title + "（" + rows.length + "）" });
    const ol = document.createElement("ol");
    ol.className = "plain";
    ol.replaceChildren(...(rows.length ? rows.map(li) : [li(text("handover.none"))]));
    return [h, ol];
  }

  function showHandover(h) {
    current = h;
    const r = h.report;
    $("report").hidden = false;
    $("r-title").textContent = text("handover.title") + " #" + h.id + " · " + text("handover.shift") + " " + text("shift." + h.shift, h.shift);
    const facts = [
      [text("handover.made"), when(h.created_at) + " " + h.created_by],
      [text("handover.outgoing"), h.outgoing_by ? h.outgoing_by + " " + when(h.outgoing_at) : text("handover.waiting")],
      [text("handover.incoming"), h.incoming_by ? h.incoming_by + " " + when(h.incoming_at) : text("handover.waiting")],
      [text("handover.sha"), h.report_sha256.slice(0, 16) + "…"],
    ];
    $("r-facts").replaceChildren(...facts.flatMap(([k, v]) => [
      Object.assign(document.createElement("dt"), { textContent: k }),
      Object.assign(document.createElement("dd"), { textContent: v }),
    ]));
    const alarmLine = (a) => "P" + a.priority + " " + text("alarm." + a.type, a.type) + " · " + text("state." + a.state, a.state);
    const discrepancies = Object.entries(r.items.discrepancies).map(([k, v]) => k + ": " + v.expected + " → " + v.counted);
    $("r-body").replaceChildren(
      ...section(text("handover.open_alarms"), r.open_alarms.map(alarmLine)),
      ...section(text("handover.alarms_of_shift"), r.alarms_of_shift.map(alarmLine)),
      ...section(text("handover.visitors"), r.visitors_inside.map((v) => v.name + " → " + v.host_unit)),
      ...section(text("handover.late_requests"), (r.late_requests || []).map((d) => "#" + d.alarm_id + " " +
        text("alarm." + d.type, d.type) + " · " + text("deadline." + d.stage, d.stage) + " · " +
        Math.round(d.late_s / 60) + " min")),
      ...section(text("handover.rectifications"), (r.rectifications_overdue || []).map((n) => n.number + " " + n.unit +
        " · " + n.issue + " · " + Math.round(n.overdue_s / 3600) + " h")),
      ...section(text("handover.workers"), (r.workers_inside || []).map((w) => w.name + " · " + (w.unit || "—"))),
      ...section(text("handover.overstaying"), (r.visitors_overstaying || []).map((v) => v.name + " → " + v.host_unit +
        " · " + when(v.valid_until).slice(11, 16))),
      ...section(text("handover.patrol"), (r.patrol_rounds || []).map((p) => when(p.planned_at).slice(11, 16) + " " + p.route +
        " · " + text("patrol." + p.status, p.status) + (p.missing.length ? " · " + p.missing.join(", ") : "") +
        (p.guards ? " · " + p.guards : ""))),
      ...section(text("handover.faults"), (r.faults_open || []).map((f) => f.number + " " + f.place + " · " +
        f.description + (f.received_by ? " · " + f.received_by : ""))),
      ...section(text("handover.keys_out"), (r.keys_out || []).map((k) => k.key_id + " " + k.label + " ×" + k.quantity +
        " · " + k.borrower + (k.company ? "（" + k.company + "）" : "") + " · " + text("keys.due") + " " + when(k.due_at) +
        " · " + text("keys.state." + k.state, k.state))),
      ...section(text("handover.overrides"), r.overrides.map((o) => o.gate + " " + (o.by || "") + " " + (o.notes || ""))),
      ...section(text("handover.confiscations"), r.confiscations.map((c) => (c.reason || "") + " " + (c.by || ""))),
      ...section(text("handover.discrepancies"), discrepancies),
      ...(r.notes ? [Object.assign(document.createElement("p"), { textContent: text("handover.notes") + "：" + r.notes })] : []),
    );
    const sign = $("sign");
    if (h.signed) {
      sign.textContent = text("handover.signed"); sign.disabled = true;
    } else if (!h.outgoing_by) {
      sign.textContent = text("handover.sign_out"); sign.disabled = h.created_by !== config.user;
    } else {
      sign.textContent = text("handover.sign_in"); sign.disabled = h.outgoing_by === config.user;
    }
  }

  $("handover-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const counted = {};
    for (const input of document.querySelectorAll("#items input")) counted[input.dataset.item] = parseInt(input.value || "0", 10);
    const notes = $("handover-notes").value.trim() || undefined;
    try { showHandover(await api("POST", "/api/v1/handovers", { items: counted, notes })); notice(""); } catch (err) { notice(err.message); }
  });
  $("sign").addEventListener("click", async () => {
    try { showHandover(await api("POST", "/api/v1/handovers/" + current.id + "/sign")); notice(""); } catch (err) { notice(err.message); }
    loadLog();
  });
  $("print").addEventListener("click", () => window.print());

  loadLog();
  api("GET", "/api/v1/handovers?limit=1").then((found) => {
    if (found.items.length && !found.items[0].signed) showHandover(found.items[0]);
  }).catch((err) => notice(err.message));
})();
