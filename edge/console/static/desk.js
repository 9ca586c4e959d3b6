// The office clerk's desk: issue a pass through the office API; a temporary pass goes
// straight to its printable page.
"use strict";
(function () {
  const { $, text, api, notice } = window.Gatehouse;

  for (const button of document.querySelectorAll("button.revoke")) {
    button.addEventListener("click", async () => {
      const reason = window.prompt(text("desk.revoke.reason"));
      if (!reason) return;
      try {
        await api("POST", "/api/v1/passes/" + encodeURIComponent(button.dataset.id) + "/revoke", { reason });
        window.location.reload();
      } catch (err) { notice(err.message, false); }
    });
  }

  // a slip: items one per line, "name quantity" (a quantity of 1 may be left out)
  $("slip-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const items = $("sl-items").value.split("\n").map((line) => line.trim()).filter(Boolean)
      .map((line) => {
        const m = line.match(/^(.*?)[\s×x*]+(\d+)$/);
        return m ? { name: m[1].trim(), qty: parseInt(m[2], 10) } : { name: line, qty: 1 };
      });
    const bearer = $("sl-bearer").value.trim();
    const body = { unit: $("sl-unit").value.trim(), owner: $("sl-owner").value.trim(), bearer,
                   authorisation: $("sl-auth").value, items };
    if (body.authorisation === "written") {
      body.authorisation_detail = { delegate: bearer, moving_time: $("sl-moving").value.trim(),
                                    goods_list: $("sl-items").value.trim() };
    } else if (body.authorisation === "company") {
      body.authorisation_detail = { signer: $("sl-signer").value.trim() };
    }
    let data;
    try { data = await api("POST", "/api/v1/slips", body); } catch (err) { notice(err.message, false); return; }
    window.location.href = "/desk/slips/" + encodeURIComponent(data.number) + "/print";
  });

  $("issue-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { kind: $("p-kind").value, card: $("p-card").value.trim(),
                   name: $("p-name").value.trim() };
    for (const [field, id] of [["unit", "p-unit"], ["id_number", "p-id"], ["permit_no", "p-permit"]]) {
      const v = $(id).value.trim();
      if (v) body[field] = v;
    }
    if ($("p-until").value) body.valid_until = $("p-until").value; // the office's time zone
    let data;
    try { data = await api("POST", "/api/v1/passes", body); } catch (err) { notice(err.message, false); return; }
    if (data.kind === "temporary") {
      window.location.href = "/desk/passes/" + encodeURIComponent(data.id) + "/print";
    } else {
      window.location.reload();
    }
  });
})();
