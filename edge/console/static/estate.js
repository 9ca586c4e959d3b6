// The estate at the office desk: its units, renovation permits and visitors announced in
// advance, through the office API (/api/v1/units, /permits, /expected-visitors). Each
// section says a refusal under its own form; an announced visitor goes straight to the
// page that prints the code.
"use strict";
(function () {
  const { $, text, api, notice } = window.Gatehouse;

  // the estate a form is for: chosen where the office has several, else the office's only
  function site(body, id) {
    if ($(id)) body.site = $(id).value;
    return body;
  }

  // -- units: pasted or typed, one per line (or separated by spaces or commas)
  $("unit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const units = $("u-units").value.split(/[\s,，、;；]+/).filter(Boolean);
    try {
      await api("POST", "/api/v1/units", site({ units }, "u-site"));
    } catch (err) { notice(err.message, false, "u-notice"); return; }
    window.location.reload();
  });

  for (const button of document.querySelectorAll("button.remove-unit")) {
    button.addEventListener("click", async () => {
      const row = button.closest("li");
      if (!window.confirm(text("estate.units.remove.confirm") + row.dataset.unit)) return;
      const query = "?site=" + encodeURIComponent(row.dataset.site);
      try {
        await api("DELETE", "/api/v1/units/" + encodeURIComponent(row.dataset.unit) + query);
      } catch (err) { notice(err.message, false, "u-notice"); return; }
      window.location.reload();
    });
  }

  // -- renovation permits
  $("permit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { permit_no: $("pm-no").value.trim(), unit: $("pm-unit").value.trim(),
                   company: $("pm-company").value.trim() };
    for (const [field, id] of [["scope", "pm-scope"], ["valid_from", "pm-from"],
                               ["valid_until", "pm-until"]]) {
      const v = $(id).value.trim();
      if (v) body[field] = v; // times: the office's time zone
    }
    try {
      await api("POST", "/api/v1/permits", site(body, "pm-site"));
    } catch (err) { notice(err.message, false, "pm-notice"); return; }
    window.location.reload();
  });

  // suspend asks the stop-work order's cause (the office refuses one without); resume and
  // close offer the usual reason, to keep or change
  const asked = { suspend: ["estate.permit.suspend.reason", ""],
                  resume: ["estate.permit.resume.reason", "estate.permit.resume.usual"],
                  close: ["estate.permit.close.reason", "estate.permit.close.usual"] };
  for (const button of document.querySelectorAll("button.permit-move")) {
    button.addEventListener("click", async () => {
      const permit = button.closest("tr").dataset.permit;
      const [question, usual] = asked[button.dataset.move];
      const reason = window.prompt(text(question) + " · " + permit, usual ? text(usual) : "");
      if (reason === null) return;
      const path = "/api/v1/permits/" + encodeURIComponent(permit) + "/" + button.dataset.move;
      try {
        await api("POST", path, { reason: reason.trim() || null }); // none given: none kept
      } catch (err) { notice(err.message, false, "pm-notice"); return; }
      window.location.reload();
    });
  }

  // -- visitors announced in advance: announced, then straight to the code to print
  $("visit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { host_unit: $("v-unit").value.trim(), name: $("v-name").value.trim(),
                   category: $("v-category").value, valid_until: $("v-until").value,
                   entries: parseInt($("v-entries").value, 10) || 1 };
    if ($("v-from").value) body.valid_from = $("v-from").value; // empty: from now
    let data;
    try {
      data = await api("POST", "/api/v1/expected-visitors", site(body, "v-site"));
    } catch (err) { notice(err.message, false, "v-notice"); return; }
    window.location.href = "/desk/visitors/" + encodeURIComponent(data.id) + "/print";
  });

  for (const button of document.querySelectorAll("button.cancel-visit")) {
    button.addEventListener("click", async () => {
      const row = button.closest("tr");
      if (!window.confirm(text("estate.visit.cancel.confirm") + row.dataset.code)) return;
      try {
        await api("POST", "/api/v1/expected-visitors/" + encodeURIComponent(row.dataset.id) + "/cancel");
      } catch (err) { notice(err.message, false, "v-notice"); return; }
      window.location.reload();
    });
  }
})();
