// One job: polled every second; the report's charts are reloaded every 30 s while it runs
// (a 20,000-row report takes the server about 3 s to make).
"use strict";

const jobId = decodeURIComponent(window.location.pathname.split("/").pop());
const base = "/api/jobs/" + encodeURIComponent(jobId);
const $ = (id) => document.getElementById(id);
let reportAt = 0, reportDone = -1;

$("job-id").textContent = jobId;
document.title = "askbatch job " + jobId;
$("download-csv").href = base + "/answers.csv";
$("download-report").href = base + "/report.html?download=1";

function show(job) {
  $("state").textContent = job.state;
  $("state").className = "state " + job.state;
  $("bar").replaceChildren(bar(job.percent, true));
  $("percent").textContent = job.percent + " %";
  $("rows").textContent = number(job.done) + " / " + number(job.total);
  $("cost").textContent = usd(job.cost_usd) + (job.unpriced_rows ? " +" + job.unpriced_rows + " unpriced" : "");
  $("eta").textContent = duration(job.eta_s);
  $("rate").textContent = job.rows_per_s === null ? "–" : String(job.rows_per_s);
  $("tokens").textContent = number(job.tokens.total);
  $("by-status").textContent = statuses(job.by_status);
  $("settings").textContent = settingsText(job.settings) +
    (job.settings.instructions ? " · instructions: " + job.settings.instructions : "") +
    (job.settings.profile ? " · profile " + job.settings.profile : "");
  $("worksheet").textContent = job.worksheet;
  $("created").textContent = job.created;
  $("mode").textContent = job.where;
  $("status-line").textContent = job.status_line + (job.pace ? " · pace: " + job.pace : "") +
    (job.retries ? " · retries: " + number(job.retries) : "");
  $("note").hidden = !job.note;
  $("note").textContent = job.note || "";
  const going = job.state === "running" || job.state === "waiting";
  const again = job.failed + (job.by_status.cancelled || 0);
  $("cancel").disabled = !going;
  $("resume").disabled = !job.can_resume || going || job.done >= job.total;
  $("retry").disabled = !job.can_resume || going || again === 0;
  const models = Object.entries(job.cost_by_model).map(([model, m]) => {
    const row = el("tr");
    row.append(el("td", { text: model }), el("td", { class: "num", text: number(m.rows) }),
               el("td", { class: "num", text: usd(m.cost_usd) }),
               el("td", { class: "num", text: number(m.unpriced_rows) }));
    return row;
  });
  document.querySelector("#models tbody").replaceChildren(...models);
  const failures = job.failures.map((f) => {
    const row = el("tr");
    row.append(el("td", { class: "num", text: String(f.row) }), el("td", { text: f.status }),
               el("td", { text: f.error }));
    return row;
  });
  document.querySelector("#failures tbody").replaceChildren(...failures);
  $("no-failures").hidden = failures.length > 0;
  $("failed-count").textContent = job.failed ? "(" + number(job.failed) + " rows)" : "";
  $("graded").hidden = !job.grade;
  if (job.grade) {
    $("score").textContent = job.grade.line + (job.grade.wrong.length ? "; the wrong rows:" : "");
    const wrong = job.grade.wrong.map((w) => {
      const row = el("tr");
      row.append(el("td", { class: "num", text: String(w.row) }), el("td", { text: w.question }),
                 el("td", { text: w.key }), el("td", { text: w.answer }));
      return row;
    });
    document.querySelector("#wrong tbody").replaceChildren(...wrong);
  }
  const now = Date.now();
  if (job.done !== reportDone && (now - reportAt > 30000 || job.done >= job.total)) {
    reportAt = now;
    reportDone = job.done;
    $("report").src = base + "/report.html";
  }
}

async function refresh() {
  try {
    show(await api(base));
    $("error").textContent = "";
  } catch (error) {
    $("error").textContent = error.message;
  }
}

for (const action of ["cancel", "resume", "retry"]) {
  $(action).addEventListener("click", async () => {
    $("message").textContent = "";
    $("error").textContent = "";
    try {
      const result = await api(base + "/" + action, { method: "POST" });
      $("message").textContent = result.message;
    } catch (error) {
      $("error").textContent = error.message;
    }
    refresh();
  });
}

showWhere();
refresh();
setInterval(refresh, 1000);
