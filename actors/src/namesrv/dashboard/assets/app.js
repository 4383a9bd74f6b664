// Skylark dashboard: polls the NameServer's /api/overview and /api/history
// and renders them; every value goes into the page as text (textContent),
// never as HTML. Charts are Chart.js line charts over the last 10 minutes.
"use strict";

const COLORS = ["#1d3557", "#e63946", "#2a9d8f", "#f4a261", "#6a4c93", "#457b9d", "#8ab17d", "#e76f51"];
const MAX_SERIES = 8;
const charts = {};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function num(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
function rate(n) { return n === null || n === undefined ? "–" : Number(n).toFixed(1); }
function pct(n) { return n === null || n === undefined ? "–" : (n * 100).toFixed(1) + "%"; }
function time(ms) { return new Date(ms).toLocaleTimeString("en-GB", { hour12: false }); }

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
  if (rows.length === 0) {
    const cols = document.querySelectorAll("#" + tableId + " thead th").length;
    body.append(el("tr", {}, el("td", { class: "muted", colSpan: cols }, "none")));
  }
}

function brokerRows(brokers) {
  return brokers.map((b) => {
    let state = el("span", { class: "ok" }, "ok");
    if (b.error) state = el("span", { class: "bad" }, "unreachable: " + b.error);
    else if (b.master_connected === false) state = el("span", { class: "bad" }, "not replicating");
    const disk = b.disk_usage_ratio === null ? "–"
      : pct(b.disk_usage_ratio) + " (refuses above " + pct(b.disk_hard_limit_ratio) + ")";
    return el("tr", { "data-broker": b.addr },
      el("td", {}, b.cluster), el("td", {}, b.broker_name), el("td", {}, b.broker_id),
      el("td", {}, b.addr), el("td", {}, b.role || "–"),
      el("td", { class: "num commit-log-end" }, num(b.commit_log_end)),
      el("td", { class: "num replication-lag" }, b.broker_id === 0 ? "–" : num(b.replication_lag)),
      el("td", { class: "num disk" }, disk), el("td", {}, state));
  });
}

function topicRows(topics) {
  const sorted = [...topics].sort((a, b) => (a.system - b.system) || a.topic.localeCompare(b.topic));
  return sorted.map((t) => {
    const min = t.queues.reduce((s, q) => s + q.min_offset, 0);
    const max = t.queues.reduce((s, q) => s + q.max_offset, 0);
    return el("tr", { "data-topic": t.topic, class: t.system ? "system" : "" },
      el("td", { class: "topic-name" }, t.topic),
      el("td", { class: "num" }, t.read_queues + "/" + t.write_queues),
      el("td", { class: "num messages" }, num(t.messages)),
      el("td", { class: "num" }, num(min)), el("td", { class: "num" }, num(max)),
      el("td", { class: "num tps-in" }, rate(t.tps_in)),
      el("td", { class: "num tps-out" }, rate(t.tps_out)));
  });
}

function groupRows(groups) {
  return groups.map((g) => {
    const queues = el("div", { class: "queues" });
    for (const q of g.queues) {
      queues.append(el("div", { "data-queue": q.topic + "/" + q.broker_name + "/" + q.queue_id },
        q.topic + " / " + q.broker_name + " / " + q.queue_id + ": " + num(q.consumer_offset) +
        " → " + num(q.broker_offset) + ", lag " + num(q.lag)));
    }
    return el("tr", { "data-group": g.group },
      el("td", { class: "group-name" }, g.group),
      el("td", { class: "num members", title: g.members.join("\n") }, g.members.length),
      el("td", { class: "num lag" }, num(g.total_lag)),
      el("td", { class: "num tps" }, rate(g.tps)), el("td", {}, queues));
  });
}

function pendingRows(pending) {
  return pending.map((p) => {
    const levels = p.delay_levels.filter((l) => l[2] > 0)
      .map((l) => "level " + l[0] + " (" + (l[1] / 1000) + " s): " + num(l[2])).join(", ");
    return el("tr", { "data-broker": p.addr },
      el("td", {}, p.broker_name + " (" + p.addr + ")"),
      el("td", { class: "num delayed" }, num(p.delayed_pending)),
      el("td", { class: "num timer" }, num(p.timer_pending)),
      el("td", { class: "num half" }, num(p.half_pending)),
      el("td", { class: "muted" }, levels || "–"));
  });
}

function renderAlerts(alerts) {
  const ul = document.getElementById("alerts");
  if (alerts.length === 0) {
    ul.replaceChildren(el("li", { class: "ok" }, "no alerts"));
    return;
  }
  ul.replaceChildren(...alerts.map((a) =>
    el("li", { class: "alert", "data-kind": a.kind, "data-subject": a.subject }, a.message)));
}

function chart(id) {
  if (charts[id]) return charts[id];
  charts[id] = new Chart(document.getElementById(id), {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      elements: { point: { radius: 2 } },
      scales: {
        x: { type: "linear", ticks: { callback: (v) => time(v), maxTicksLimit: 6 } },
        y: { beginAtZero: true },
      },
      plugins: { tooltip: { callbacks: { title: (items) => items.length ? time(items[0].parsed.x) : "" } } },
    },
  });
  return charts[id];
}

function drawSeries(id, series, now) {
  const c = chart(id);
  // Always the last 10 minutes, even with one point or none yet.
  c.options.scales.x.min = now - 10 * 60 * 1000;
  c.options.scales.x.max = now;
  const names = Object.keys(series).slice(0, MAX_SERIES);
  c.data.datasets = names.map((name, i) => ({
    label: name,
    data: series[name].map(([x, y]) => ({ x, y })),
    borderColor: COLORS[i % COLORS.length],
    backgroundColor: COLORS[i % COLORS.length],
    borderWidth: 2,
  }));
  c.update();
}

// With ACL on, message search needs an admin account: the request is
// signed here (HMAC-SHA256 with WebCrypto, see docs/security.md), the
// secret never leaves the page.
async function signedHeaders(url, ak, sk) {
  if (!ak) return {};
  if (!window.crypto || !window.crypto.subtle) {
    throw new Error("signing needs WebCrypto, which browsers give https and localhost pages only");
  }
  const u = new URL(url, window.location.href);
  const ts = String(Date.now());
  const words = window.crypto.getRandomValues(new Uint32Array(2));
  const nonce = String((BigInt(words[0]) << 32n) | BigInt(words[1]));
  const text = ["skylark-http-v1", "GET", u.pathname + u.search, ts, nonce, ak].join("\n");
  const enc = new TextEncoder();
  const key = await window.crypto.subtle.importKey(
    "raw", enc.encode(sk), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const sig = new Uint8Array(await window.crypto.subtle.sign("HMAC", key, enc.encode(text)));
  const hex = Array.from(sig, (b) => b.toString(16).padStart(2, "0")).join("");
  return { Authorization: "Skylark " + ak + ":" + ts + ":" + nonce + ":" + hex };
}

async function getJson(url, headers) {
  const r = await fetch(url, { cache: "no-store", headers: headers || {} });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [s, h] = await Promise.all([getJson("/api/overview"), getJson("/api/history")]);
    fill("brokers", brokerRows(s.brokers));
    fill("topics", topicRows(s.topics));
    fill("groups", groupRows(s.groups));
    fill("pending", pendingRows(s.pending));
    renderAlerts(s.alerts);
    document.getElementById("topics-note").textContent = s.topics_not_sampled > 0
      ? s.topics_not_sampled + " more topics not sampled" : "";
    drawSeries("chart-tps-in", h.topic_tps_in, s.sampled_at_ms || Date.now());
    drawSeries("chart-tps-out", h.topic_tps_out, s.sampled_at_ms || Date.now());
    drawSeries("chart-lag", h.group_lag, s.sampled_at_ms || Date.now());
    drawSeries("chart-group-tps", h.group_tps, s.sampled_at_ms || Date.now());
    status.textContent = s.sampled_at_ms
      ? "sampled " + time(s.sampled_at_ms) + (s.errors.length ? " · " + s.errors.length + " errors: " + s.errors.join("; ") : "")
      : "waiting for the first sample…";
    status.dataset.sampledAt = s.sampled_at_ms;
    return s.sample_interval_ms;
  } catch (e) {
    status.textContent = "cannot load: " + e.message;
    return 5000;
  }
}

async function loop() {
  const interval = await refresh();
  setTimeout(loop, Math.max(1000, interval || 5000));
}

function showMessages(messages) {
  return messages.map((m) => {
    const props = el("table", {}, ...m.properties.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
    return el("div", { class: "message", "data-msg-id": m.msg_id },
      el("div", {}, el("strong", {}, m.topic), " · queue " + m.queue_id + " offset " + m.queue_offset +
        " · " + m.broker + " · stored " + new Date(m.store_timestamp).toISOString()),
      el("div", { class: "muted" }, "id " + m.msg_id),
      props,
      el("pre", { class: "body" }, m.body + (m.body_truncated ? " … (" + m.body_size + " bytes)" : "")));
  });
}

function setupSearch() {
  const by = document.getElementById("search-by");
  const value = document.getElementById("search-value");
  by.addEventListener("change", () => {
    value.placeholder = { key: "key", id: "message id or UNIQ_KEY", time: "store time (ms or ISO date)" }[by.value];
  });
  document.getElementById("search").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = document.getElementById("search-results");
    const st = document.getElementById("search-status");
    const q = new URLSearchParams();
    const topic = document.getElementById("search-topic").value.trim();
    if (topic) q.set("topic", topic);
    let v = value.value.trim();
    if (by.value === "time" && !/^\d+$/.test(v)) v = String(Date.parse(v));
    q.set(by.value, v);
    st.textContent = "searching…";
    try {
      const url = "/api/messages?" + q.toString();
      const ak = document.getElementById("search-ak").value.trim();
      const sk = document.getElementById("search-sk").value;
      const r = await getJson(url, await signedHeaders(url, ak, sk));
      st.textContent = r.messages.length + " message(s)";
      out.replaceChildren(...showMessages(r.messages));
    } catch (e) {
      st.textContent = e.message;
      out.replaceChildren();
    }
  });
}

setupSearch();
loop();
