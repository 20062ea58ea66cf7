// The upload page: sends the file as the request body with XMLHttpRequest (so the bar follows the
// bytes leaving the browser), then follows the operation that streams it to the host. Cancel aborts
// the request while it is sending, and cancels the operation afterwards (the partial volume goes).
import { getCookie } from "./http.js";

const form = document.getElementById("upload-form");
if (form) {
  const file = form.querySelector("#up-file");
  const name = form.querySelector("#up-name");
  const format = form.querySelector("#up-format");
  const bar = form.querySelector("#up-progress");
  const status = form.querySelector("#up-status");
  const start = form.querySelector("#up-start");
  const cancel = form.querySelector("#up-cancel");
  const token = () => getCookie("csrftoken") || form.querySelector("input[name=csrfmiddlewaretoken]").value;
  let xhr = null;
  let operation = null;
  let following = null;

  const show = (percent, text) => {
    bar.hidden = false;
    bar.setAttribute("aria-valuenow", String(percent));
    bar.firstElementChild.style.width = `${percent}%`;
    status.textContent = text;
  };
  const done = (text) => {
    start.disabled = false;
    cancel.hidden = true;
    status.textContent = text;
    if (following) clearInterval(following);
  };

  file.addEventListener("change", () => {
    const chosen = file.files[0];
    if (chosen && !name.value) name.value = chosen.name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^[.-]+/, "");
    if (chosen && /\.qcow2$/i.test(chosen.name)) format.value = "qcow2";
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) return;
    if (chosen.size > Number(form.dataset.available)) {
      status.textContent = "The file is larger than the pool's free space.";
      return;
    }
    const query = new URLSearchParams({ name: name.value, image_format: format.value });
    xhr = new XMLHttpRequest();
    xhr.open("POST", `${form.dataset.uploadUrl}?${query}`);
    xhr.setRequestHeader("X-CSRFToken", token());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) show(Math.floor((50 * e.loaded) / e.total), `Sending to kvmweb: ${Math.floor((100 * e.loaded) / e.total)}%`);
    });
    xhr.addEventListener("load", () => {
      const body = JSON.parse(xhr.responseText || "{}");
      if (xhr.status !== 202) return done(body.error?.message || `Refused (${xhr.status}).`);
      operation = body.operation;
      show(50, "Queued: a worker sends it to the host…");
      following = setInterval(follow, 1000);
    });
    xhr.addEventListener("error", () => done("The upload failed: the connection was lost."));
    xhr.addEventListener("abort", () => done("Cancelled: nothing was kept."));
    start.disabled = true;
    cancel.hidden = false;
    xhr.send(chosen);
  });

  async function follow() {
    const answer = await fetch(`/api/v1/operations/${operation.id}/`, { credentials: "same-origin" });
    if (!answer.ok) return;
    const op = await answer.json();
    show(50 + Math.floor(op.progress / 2), op.message || op.status);
    if (op.status === "succeeded") done(`Done: ${name.value} is in the pool.`);
    else if (op.status === "failed") done(`Failed: ${op.error}`);
    else if (op.status === "cancelled") done("Cancelled: the partial volume was removed.");
  }

  cancel.addEventListener("click", async () => {
    if (!operation) return xhr?.abort();
    const url = form.dataset.cancelUrl.replace("/0/", `/${operation.id}/`);
    await fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": token() } });
    follow();
  });
}
