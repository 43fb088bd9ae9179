// askbatch serve: helpers shared by both pages (plain JavaScript, nothing fetched from elsewhere).
"use strict";

async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : { error: await response.text() };
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

function usd(text) {
  const value = Number(text);
  if (!isFinite(value)) return "–";
  return "$" + (value !== 0 && value < 0.01 ? value.toFixed(6) : value.toFixed(4));
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return Math.round(seconds) + " s";
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return m + " min " + s + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function bar(percent, big) {
  const outer = el("div", { class: big ? "bar big" : "bar", role: "progressbar",
                            "aria-valuenow": String(percent), "aria-valuemin": "0", "aria-valuemax": "100" });
  const inner = el("span");
  inner.style.width = Math.min(100, percent) + "%";
  outer.append(inner);
  return outer;
}

function statuses(byStatus) {
  return Object.entries(byStatus).map(([s, n]) => number(n) + " " + s).join(", ") || "–";
}

function settingsText(s) {
  const parts = [s.provider, s.model];
  if (s.service_tier) parts.push("tier " + s.service_tier);
  if (s.batch) parts.push("Batch API");
  parts.push(s.base_url);
  if (s.max_cost) parts.push("cap $" + s.max_cost);
  return parts.join(" · ");
}

async function showWhere() {
  try {
    const config = await api("/api/config");
    document.getElementById("where").textContent = "jobs run " + config.where;
    return config;
  } catch (error) {
    document.getElementById("where").textContent = error.message;
    return null;
  }
}
