// helpline supervisor view: renders the JSON of GET /api/live as it arrives over Server-Sent Events
// (/events), and sends break/back with the session's CSRF token. Plain JS, no build step, no network
// but this server. Times between two updates grow on their own (each update carries `at`).
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
let page = null;          // the last update
let receivedAt = 0;       // performance.now() when it came
let previous = null;      // the update before, for screen-reader announcements

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + String(s % 60).padStart(2, "0") + " s";
  return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
}

// A cell whose duration grows with time: data-ms is the value at `page.at`.
function timeCell(tag, ms, attrs) {
  const el = h(tag, Object.assign({ "data-ms": ms }, attrs || {}), duration(ms));
  return el;
}

function zoneOf(region) {
  const r = page.regions.find((x) => x.name === region);
  return r ? r.time_zone : "UTC";
}

function clock(date, zone, seconds) {
  try {
    return new Intl.DateTimeFormat("en-GB", {
      timeZone: zone, hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined,
    }).format(date);
  } catch (e) {
    return date.toISOString().slice(11, seconds ? 19 : 16) + " UTC";
  }
}

function nowWall() {
  return new Date(Date.parse(page.at) + (performance.now() - receivedAt));
}

function label(s) {
  return s.replace(/-/g, " ");
}

function percent(x) {
  return x === null || x === undefined ? "–" : Math.round(x * 100) + " %";
}

function renderQueues() {
  const box = document.getElementById("regions");
  const byRegion = new Map();
  for (const q of page.queues) {
    if (!byRegion.has(q.region)) byRegion.set(q.region, []);
    byRegion.get(q.region).push(q);
  }
  document.getElementById("sl-hint").textContent =
    "Service level: answered within " + page.service_level_secs + " s, of callers answered or given up today.";
  const out = [];
  if (byRegion.size === 0) out.push(h("p", { class: "none" }, "No queue has agents or callers yet."));
  for (const [region, queues] of byRegion) {
    const zone = zoneOf(region);
    out.push(h("h3", { "data-region": region }, region + " ",
      h("span", { class: "region-time", "data-zone": zone },
        "local time " + clock(nowWall(), zone, false) + " (" + zone + ")")));
    for (const q of queues) out.push(renderQueue(q, zone));
  }
  box.replaceChildren(...out);
}

function renderQueue(q, zone) {
  const id = "q-" + q.name.replace(/[^a-z0-9]/gi, "-");
  const stats = h("dl", { class: "stats" },
    h("div", {}, h("dt", {}, "Waiting"), h("dd", { "data-field": "waiting-count" }, q.waiting.length)),
    h("div", {}, h("dt", {}, "Longest wait"), timeCell("dd", q.longest_wait_ms, { "data-field": "longest", "data-grow": q.waiting.length ? "1" : null })),
    h("div", {}, h("dt", {}, "Answered"), h("dd", { "data-field": "answered" }, q.answered)),
    h("div", {}, h("dt", {}, "Abandoned"), h("dd", { "data-field": "abandoned" }, q.abandoned)),
    h("div", {}, h("dt", {}, "Service level"), h("dd", { "data-field": "service-level" }, percent(q.service_level))),
    h("div", {}, h("dt", {}, "Agents available"), h("dd", {}, q.agents_available)));
  let line;
  if (q.waiting.length === 0) {
    line = h("p", { class: "none" }, "Nobody waiting.");
  } else {
    const at = Date.parse(page.at);
    line = h("div", { class: "scroll" }, h("table", { "aria-labelledby": id },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "#"), h("th", { scope: "col" }, "Caller"),
        h("th", { scope: "col" }, "Waiting"), h("th", { scope: "col" }, "Since (" + zone + ")"),
        h("th", { scope: "col" }, "Language"), h("th", { scope: "col" }, "Order"),
        h("th", { scope: "col" }, "Ringing"))),
      h("tbody", {}, q.waiting.map((w, i) => h("tr", { "data-call-id": w.call_id },
        h("td", {}, i + 1),
        h("td", { class: "callid" }, w.call_id),
        timeCell("td", w.waiting_ms, { "data-field": "waiting", "data-grow": "1" }),
        h("td", {}, clock(new Date(at - w.waiting_ms), zone, true)),
        h("td", {}, w.language),
        h("td", {}, w.order || "–"),
        h("td", {}, w.ringing.join(", ") || "–"))))));
  }
  return h("div", { class: "queue", "data-queue": q.name },
    h("h4", { id: id, class: "visually-hidden" }, "Callers waiting in " + q.name),
    h("strong", {}, q.name), stats, line);
}

function renderAgents() {
  const body = document.querySelector("#agents-table tbody");
  const rows = page.agents.map((a) => {
    const onBreak = a.status === "on-break";
    const loggedOut = a.status === "logged-out";
    const action = onBreak ? "back" : "break";
    const button = h("button", {
      type: "button", "data-action": action, "data-agent": a.id, disabled: loggedOut,
      "aria-label": (onBreak ? "Take " + a.name + " off break" : "Put " + a.name + " on break"),
    }, onBreak ? "Back" : "Break");
    return h("tr", { "data-agent": a.id },
      h("th", { scope: "row" }, a.name, h("br"), h("small", {}, a.id)),
      h("td", { "data-field": "status", class: "status-" + a.status }, label(a.status)),
      h("td", { "data-field": "state" }, label(a.state)),
      a.since_ms === null ? h("td", {}, "–") : timeCell("td", a.since_ms, { "data-grow": "1" }),
      h("td", { "data-field": "calls-today" }, a.calls_today),
      h("td", { "data-field": "caller", class: "callid" }, a.caller || "–"),
      h("td", {}, button));
  });
  if (rows.length === 0) rows.push(h("tr", {}, h("td", { colspan: 7, class: "none" }, "No agents declared.")));
  body.replaceChildren(...rows);
}

function place(where) {
  const [kind, name] = where.split(/:(.*)/s);
  switch (kind) {
    case "menu": return "menu " + name;
    case "queue": return "waiting in " + name;
    case "agent": return "talking to " + name;
    default: return kind;
  }
}

function renderCalls() {
  const body = document.querySelector("#calls-table tbody");
  const rows = page.calls.map((c) => h("tr", { "data-call-id": c.call_id },
    h("th", { scope: "row", class: "callid" }, c.call_id),
    h("td", {}, c.region || "–"),
    h("td", { "data-field": "where", "data-where": c.where }, place(c.where)),
    timeCell("td", c.since_ms, { "data-grow": "1" }),
    h("td", {}, c.language || "–"),
    h("td", {}, c.order || "–")));
  if (rows.length === 0) rows.push(h("tr", {}, h("td", { colspan: 6, class: "none" }, "No calls in progress.")));
  body.replaceChildren(...rows);
}

function bar(name, n, max, left) {
  const b = h("span", { class: left ? "bar left" : "bar", "aria-hidden": "true" });
  // CSSOM, not a style attribute: the page's Content-Security-Policy forbids inline styles.
  b.style.width = (max ? (100 * n) / max : 0) + "%";
  return h("li", {}, h("span", {}, name), b, h("span", { class: "n" }, n));
}

function renderFunnel() {
  const box = document.getElementById("funnels");
  const regions = Object.entries(page.funnel || {});
  if (regions.length === 0) {
    box.replaceChildren(h("p", { class: "none" }, "No finished calls yet."));
    return;
  }
  box.replaceChildren(...regions.map(([region, f]) => {
    const max = f.calls;
    const items = [bar("reached a queue or transfer", f.routed, max, false)];
    for (const [menu, exit] of Object.entries(f.left)) {
      items.push(bar("left in " + menu, exit.calls, max, true));
    }
    return h("div", { "data-funnel": region },
      h("h3", {}, region + " ", h("span", { class: "region-time" }, f.calls + " calls")),
      h("ul", { class: "bars", "aria-label": "Funnel of " + region }, items));
  }));
}

function announce() {
  if (!previous) return;
  const said = [];
  const before = new Set(previous.queues.flatMap((q) => q.waiting.map((w) => w.call_id)));
  for (const q of page.queues) {
    const fresh = q.waiting.filter((w) => !before.has(w.call_id)).length;
    if (fresh) said.push(fresh + " new caller" + (fresh > 1 ? "s" : "") + " waiting in " + q.name);
  }
  const old = new Map(previous.agents.map((a) => [a.id, a]));
  for (const a of page.agents) {
    const o = old.get(a.id);
    if (o && o.status !== a.status) said.push(a.name + " is " + label(a.status));
  }
  if (said.length) document.getElementById("announce").textContent = said.join(". ") + ".";
}

function render() {
  // Keep keyboard focus on the same button across a re-render.
  const focused = document.activeElement;
  const key = focused && focused.dataset && focused.dataset.agent
    ? '[data-agent="' + CSS.escape(focused.dataset.agent) + '"][data-action]' : null;
  renderQueues();
  renderAgents();
  renderCalls();
  renderFunnel();
  announce();
  if (key) {
    const again = document.querySelector(key);
    if (again) again.focus();
  }
}

// Durations grow between updates.
setInterval(() => {
  if (!page) return;
  const extra = performance.now() - receivedAt;
  for (const el of document.querySelectorAll("[data-ms][data-grow]")) {
    el.textContent = duration(Number(el.dataset.ms) + extra);
  }
}, 1000);

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("/events");
  source.addEventListener("live", (e) => {
    previous = page;
    page = JSON.parse(e.data);
    receivedAt = performance.now();
    status.textContent = "live";
    status.className = "connection live";
    render();
  });
  source.onerror = () => {
    status.textContent = "connection lost, retrying…";
    status.className = "connection lost";
    if (source.readyState === EventSource.CLOSED) {
      // The session ended (logout, expiry, restart): show the login form.
      setTimeout(() => location.reload(), 2000);
    }
  };
}

document.addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-action]");
  if (!button) return;
  button.disabled = true;
  const response = await fetch("/api/agents/" + encodeURIComponent(button.dataset.agent) + "/" + button.dataset.action, {
    method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
  }).catch(() => null);
  if (response && response.status === 401) location.reload();
  if (!response || !response.ok) {
    const why = response ? await response.text() : "the server did not answer";
    document.getElementById("announce").textContent = "Not done: " + why;
    button.disabled = false;
  }
});

connect();
