// The office clerk's desk: issue a pass (with the holder's photo, from a file or the desk's
// camera) through the office API; a temporary pass goes straight to its printable page.
// Renew or revoke a pass, cancel a slip.
"use strict";
(function () {
  const { $, config, text, api, refusal, notice } = window.Gatehouse;

  // -- the holder's photo: uploaded as soon as it is picked; the pass names what came back
  async function upload(blob) {
    $("p-photo").value = "";
    $("p-photo-state").textContent = text("desk.photo.uploading");
    const response = await fetch("/api/v1/photos", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": blob.type || "application/octet-stream", "X-CSRF-Token": config.csrf },
      body: blob,
    });
    let data = null;
    try { data = await response.json(); } catch (_e) { data = null; }
    if (!response.ok) {
      $("p-photo-state").textContent = text("desk.photo.none");
      notice(refusal(response.status, data), false);
      return;
    }
    $("p-photo").value = data.photo;
    const img = $("p-photo-img");
    img.src = "/api/v1/photos/" + data.photo; // as it is kept: upright, scaled, no metadata
    img.hidden = false;
    $("p-photo-state").textContent = text("desk.photo.ready");
    notice("", true);
  }

  $("p-photo-file").addEventListener("change", () => {
    const file = $("p-photo-file").files[0];
    if (file) upload(file);
  });

  // a webcam at the desk: offered where the browser allows one (HTTPS, or this machine)
  let stream = null;
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) $("p-camera").hidden = false;
  $("p-camera").addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    } catch (_e) { notice(text("desk.photo.no_camera"), false); return; }
    const video = $("p-video");
    video.srcObject = stream;
    video.hidden = false;
    $("p-snap").hidden = false;
  });
  $("p-snap").addEventListener("click", () => {
    const video = $("p-video");
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    for (const track of stream.getTracks()) track.stop();
    video.hidden = true; $("p-snap").hidden = true;
    canvas.toBlob((blob) => { if (blob) upload(blob); }, "image/jpeg", 0.92);
  });

  for (const button of document.querySelectorAll("button.renew")) {
    button.addEventListener("click", async () => {
      const until = window.prompt(text("desk.renew.until"), "");
      if (until === null) return;
      const body = until.trim() ? { valid_until: until.trim().replace(" ", "T") } : {};
      let data;
      try {
        data = await api("POST", "/api/v1/passes/" + encodeURIComponent(button.dataset.id) + "/renew", body);
      } catch (err) { notice(err.message, false); return; }
      if (data.kind === "temporary") {
        window.location.href = "/desk/passes/" + encodeURIComponent(data.id) + "/print";
      } else {
        window.location.reload();
      }
    });
  }

  for (const button of document.querySelectorAll("button.cancel-slip")) {
    button.addEventListener("click", async () => {
      const reason = window.prompt(text("desk.slip.cancel.reason"));
      if (!reason) return;
      try {
        await api("POST", "/api/v1/slips/" + encodeURIComponent(button.dataset.number) + "/cancel", { reason });
        window.location.reload();
      } catch (err) { notice(err.message, false); }
    });
  }

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
    if ($("sl-site")) body.site = $("sl-site").value;
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
    if ($("p-photo").value) body.photo = $("p-photo").value;
    if ($("p-site")) body.site = $("p-site").value; // offered when the office has several
    let data;
    try { data = await api("POST", "/api/v1/passes", body); } catch (err) { notice(err.message, false); return; }
    if (data.kind === "temporary") {
      window.location.href = "/desk/passes/" + encodeURIComponent(data.id) + "/print";
    } else {
      window.location.reload();
    }
  });
})();
