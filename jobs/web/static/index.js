// The job list and the start form: the list is polled every 1.5 s.
"use strict";

const form = document.getElementById("start-form");
const errorBox = document.getElementById("error");
const estimateBox = document.getElementById("estimate-text");
const startButton = document.getElementById("start");
let upload = null; // the server's id of the worksheet last sent, once it was read without error

function formData(withFiles) {
  const data = new FormData(form);
  if (!withFiles || upload) {
    data.delete("worksheet");
    data.delete("profile");
    if (upload) data.set("upload", upload);
  }
  return data;
}

async function estimate(sendFiles) {
  errorBox.textContent = "";
  startButton.disabled = true;
  if (sendFiles) upload = null;
  if (!upload && !document.getElementById("worksheet").files.length) {
    errorBox.textContent = "Choose a worksheet first.";
    return;
  }
  try {
    const result = await api("/api/estimate", { method: "POST", body: formData(true) });
    upload = result.upload;
    estimateBox.textContent = result.text;
    estimateBox.hidden = false;
    startButton.disabled = false;
    document.getElementById("start-hint").textContent =
      result.name + ": " + number(result.rows) + " rows to ask";
  } catch (error) {
    if (sendFiles) upload = null;
    estimateBox.hidden = true;
    errorBox.textContent = error.message;
  }
}

document.getElementById("worksheet").addEventListener("change", () => estimate(true));
document.getElementById("profile").addEventListener("change", () => estimate(true));
document.getElementById("estimate").addEventListener("click", () => estimate(!upload));
for (const id of ["provider", "model", "instructions", "max_cost", "answer_tokens",
                  "service_tier", "batch", "expected", "grade_with"]) {
  document.getElementById(id).addEventListener("change", () => { if (upload) estimate(false); });
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.textContent = "";
  startButton.disabled = true;
  try {
    const result = await api("/api/jobs", { method: "POST", body: formData(false) });
    window.location.href = result.url;
  } catch (error) {
    errorBox.textContent = error.message;
    startButton.disabled = false;
  }
});

function jobRow(job) {
  const link = el("a", { href: "/jobs/" + job.id, text: job.id });
  const cells = [
    el("td", {}, link),
    el("td", { text: job.worksheet }),
    el("td", {}, el("span", { class: "state " + job.state, text: job.state })),
    el("td", {}, bar(job.percent), el("span", { class: "muted", text: job.percent + " %" })),
    el("td", { class: "num", text: number(job.done) + " / " + number(job.total) }),
    el("td", { text: statuses(job.by_status) }),
    el("td", { class: "num", text: number(job.tokens.total) }),
    el("td", { class: "num", text: usd(job.cost_usd) +
               (job.unpriced_rows ? " (+" + job.unpriced_rows + " unpriced)" : "") }),
    el("td", { class: "num", text: job.rows_per_s === null ? "–" : String(job.rows_per_s) }),
    el("td", { class: "num", text: duration(job.eta_s) }),
    el("td", { class: "muted", text: settingsText(job.settings) }),
  ];
  const row = el("tr", { "data-job": job.id });
  row.append(...cells);
  return row;
}

async function refresh() {
  try {
    const data = await api("/api/jobs");
    const body = document.querySelector("#jobs tbody");
    body.replaceChildren(...data.jobs.map(jobRow));
    document.getElementById("no-jobs").hidden = data.jobs.length > 0;
    document.getElementById("problems").textContent = data.problems.join("\n");
  } catch (error) {
    document.getElementById("problems").textContent = error.message;
  }
}

(async () => {
  const config = await showWhere();
  if (config) {
    const select = document.getElementById("provider");
    for (const name of config.providers) select.append(el("option", { value: name, text: name }));
    select.value = config.defaults.provider;
    document.getElementById("model").value = config.defaults.model;
    document.getElementById("instructions").value = config.defaults.instructions;
    document.getElementById("max_cost").value = config.defaults.max_cost;
    document.getElementById("answer_tokens").value = config.defaults.answer_tokens;
    document.getElementById("tier-field").hidden = !config.optional.includes("service_tier");
    document.getElementById("batch-field").hidden = !config.optional.includes("batch");
    if (!config.optional.includes("service_tier")) document.getElementById("service_tier").disabled = true;
    if (!config.optional.includes("batch")) document.getElementById("batch").disabled = true;
  }
  await refresh();
  setInterval(refresh, 1500);
})();
