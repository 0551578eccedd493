// The operator page: live calls polled from /api/calls, visit history from
// /api/visits with filters and pages, recordings played in one <audio>.
// Everything the server sends is put in the page with textContent, never as
// HTML, so a name or an apartment cannot inject markup.
"use strict";

const OUTCOMES = ["allowed", "denied", "no_answer", "busy", "visitor_left",
  "visitor_lost", "resident_lost", "resident_unreachable", "failed", "shutdown"];
const PAGE = 25;

const $ = (id) => document.getElementById(id);
let refreshMs = 1000;
let offset = 0;
let filters = {};

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (className) td.className = className;
  return td;
}

function clock(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleTimeString() : "—";
}

function when(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "—";
}

function duration(seconds) {
  const s = Math.floor(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("not logged in");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

// -- live calls --------------------------------------------------------------

function renderCalls(data) {
  const tbody = $("live-calls");
  const rows = data.calls.map((call) => {
    const tr = document.createElement("tr");
    tr.dataset.callUuid = call.call_uuid;
    tr.className = "call";
    const legs = call.legs.map((l) => `${l.role} ${l.state}`).join(", ");
    tr.append(
      cell(clock(call.started_at)), cell(duration(call.duration)), cell(call.gate),
      cell(call.apartment), cell(call.phase, "phase"), cell(call.state, "state"),
      cell(legs), cell(call.call_uuid, "uuid"));
    return tr;
  });
  tbody.replaceChildren(...rows);
  $("live-count").textContent = String(data.count);
  $("live-empty").hidden = data.count > 0;
}

async function pollCalls() {
  const status = $("live-status");
  try {
    renderCalls(await getJSON("/api/calls"));
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    status.classList.remove("stale");
  } catch (e) {
    status.textContent = `not updated: ${e.message}`;
    status.classList.add("stale");
  }
  setTimeout(pollCalls, refreshMs);
}

// -- history -----------------------------------------------------------------

function play(visit) {
  const player = $("player");
  $("player-label").textContent =
    `Apartment ${visit.apartment || "?"}, ${when(visit.started_at)}`;
  $("player-box").hidden = false;
  player.dataset.callUuid = visit.call_uuid;
  player.src = visit.recording_url;
  player.play().catch((e) => { player.dataset.error = e.message; });
}

function renderVisits(data) {
  const rows = data.visits.map((visit) => {
    const tr = document.createElement("tr");
    tr.dataset.callUuid = visit.call_uuid;
    tr.className = "visit";
    const recording = document.createElement("td");
    if (visit.recording_url) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "play";
      button.textContent = "▶ Play";
      button.addEventListener("click", () => play(visit));
      recording.append(button);
    } else {
      recording.textContent = "—";
    }
    tr.append(
      cell(when(visit.started_at)), cell(visit.gate), cell(visit.apartment),
      cell(visit.outcome, `outcome outcome-${visit.outcome}`),
      cell(visit.door_result), cell(visit.extensions_tried.join(", ")),
      recording, cell(visit.call_uuid, "uuid"));
    return tr;
  });
  $("visits").replaceChildren(...rows);
  $("visits-empty").hidden = rows.length > 0;
  $("prev").disabled = offset === 0;
  $("next").disabled = data.next_offset === null;
  $("page-info").textContent = rows.length
    ? `${offset + 1}–${offset + rows.length}` : "";
}

function dayStart(value, plusDays) {
  // A date input is a local calendar day; the API takes epoch seconds.
  const [y, m, d] = value.split("-").map(Number);
  return Math.floor(new Date(y, m - 1, d + plusDays).getTime() / 1000);
}

async function loadVisits() {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
  if (filters.apartment) params.set("apartment", filters.apartment);
  if (filters.outcome) params.set("outcome", filters.outcome);
  if (filters.since) params.set("since", String(dayStart(filters.since, 0)));
  if (filters.until) params.set("until", String(dayStart(filters.until, 1)));
  const problem = $("history-error");
  try {
    renderVisits(await getJSON(`/api/visits?${params}`));
    problem.hidden = true;
  } catch (e) {
    problem.textContent = e.message;
    problem.hidden = false;
  }
  document.body.dataset.visitsLoaded = String(Date.now());
}

function readFilters() {
  return {
    apartment: $("f-apartment").value.trim(),
    outcome: $("f-outcome").value,
    since: $("f-since").value,
    until: $("f-until").value,
  };
}

async function start() {
  for (const outcome of OUTCOMES) {
    const option = document.createElement("option");
    option.value = outcome;
    option.textContent = outcome.replace(/_/g, " ");
    $("f-outcome").append(option);
  }
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    filters = readFilters();
    offset = 0;
    loadVisits();
  });
  $("filters").addEventListener("reset", () => {
    filters = {};
    offset = 0;
    setTimeout(loadVisits, 0);
  });
  $("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadVisits(); });
  $("next").addEventListener("click", () => { offset += PAGE; loadVisits(); });
  const player = $("player");
  player.addEventListener("playing", () => { player.dataset.state = "playing"; });
  player.addEventListener("ended", () => { player.dataset.state = "ended"; });
  player.addEventListener("error", () => { player.dataset.state = "error"; });
  try {
    const me = await getJSON("/api/me");
    $("user").textContent = me.user;
    refreshMs = Math.round(me.live_refresh * 1000);
  } catch (e) {
    // The poll below reports it.
  }
  pollCalls();
  loadVisits();
}

start();
