// The console's live parts: local times, the device list's status cells, the device page
// (chart, tables, status) and the fleet overview, fed by the server's event streams.
// Everything from the server is written with textContent, never as markup.
"use strict";

(function () {
  const PALETTE = ["#0b63ce", "#d9480f", "#2b8a3e", "#862e9c", "#c2255c", "#087f5b", "#e67700", "#364fc7"];
  const CHART_WINDOW_S = 600;
  const MAX_POINTS = 5000;
  const TABLE_ROWS = { states: 20, commands: 20, "connection-log": 50 };

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // -- times -------------------------------------------------------------------------------
  function ago(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function showTime(node) {
    const ms = Number(node.dataset.ms);
    if (!ms) return;
    const date = new Date(ms);
    const today = date.toDateString() === new Date().toDateString();
    const local = today ? date.toLocaleTimeString() : date.toLocaleString();
    node.title = date.toISOString();
    node.textContent = node.closest(".since") ? local + " (" + ago(ms) + ")" : local;
  }

  function timeNode(ms) {
    const node = el("time", { "data-ms": String(ms) });
    showTime(node);
    return node;
  }

  function showTimes(root) {
    (root || document).querySelectorAll("time[data-ms]").forEach(showTime);
  }

  // -- connection status -----------------------------------------------------------------------
  function statusNodes(connected, since) {
    const nodes = [];
    if (connected === null || connected === undefined) nodes.push(el("span", { class: "badge never" }, "never connected"));
    else if (connected) nodes.push(el("span", { class: "badge on" }, "connected"));
    else nodes.push(el("span", { class: "badge off" }, "disconnected"));
    if (since) {
      const span = el("span", { class: "since" }, " since ");
      span.append(timeNode(since));
      nodes.push(document.createTextNode(" "), span);
      showTime(span.querySelector("time"));
    }
    return nodes;
  }

  // -- the device list -------------------------------------------------------------------------
  function liveDevices() {
    let source = null;
    function open() {
      if (source) source.close();
      source = null;
      const ids = Array.from(document.querySelectorAll("tr[data-device-id]"), (row) => row.dataset.deviceId);
      if (!ids.length) return;
      source = new EventSource("/console/live/devices?ids=" + ids.join(","));
      source.onmessage = (event) => {
        const message = JSON.parse(event.data);
        for (const [id, d] of Object.entries(message.devices || {})) {
          const row = document.querySelector('tr[data-device-id="' + id + '"]');
          if (!row) continue;
          row.querySelector(".status").replaceChildren(...statusNodes(d.connected, d.since));
          const last = row.querySelector(".last-state");
          last.replaceChildren(d.last_state ? timeNode(d.last_state) : el("span", { class: "muted" }, "none"));
        }
      };
    }
    open();
    document.body.addEventListener("htmx:afterSettle", open);
    window.addEventListener("pagehide", () => source && source.close());
  }

  // -- the device page -------------------------------------------------------------------------
  function row(cells) {
    const tr = el("tr");
    for (const cell of cells) {
      const td = el("td");
      if (cell instanceof Node) td.append(cell);
      else td.textContent = cell;
      tr.append(td);
    }
    return tr;
  }

  function stateRow(s) { return row([timeNode(s.time), el("code", {}, JSON.stringify(s.data))]); }
  function commandRow(c) { return row([timeNode(c.time), c.name, el("code", {}, JSON.stringify(c.payload))]); }
  function logRow(e) {
    const tr = row([timeNode(e.time), e.connected ? "connected" : "disconnected", e.connected ? "" : e.kind, e.reason || ""]);
    tr.className = e.connected ? "on" : "off";
    return tr;
  }

  function fill(id, items, make) {
    document.querySelector("#" + id + " tbody").replaceChildren(...items.map((item) => {
      const node = make(item);
      node.dataset.ms = String(item.time);
      return node;
    }));
  }

  function prepend(id, items, make) {
    const body = document.querySelector("#" + id + " tbody");
    for (const item of items) {
      const top = body.rows[0];
      const node = make(item);
      node.dataset.ms = String(item.time);
      if (id === "states" && top && top.dataset.ms === String(item.time)) top.replaceWith(node);
      else body.prepend(node);
    }
    while (body.rows.length > TABLE_ROWS[id]) body.deleteRow(body.rows.length - 1);
  }

  function makeChart(node, labels, data) {
    const series = [{}].concat(labels.map((label, i) => ({ label: label, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true })));
    const size = () => ({ width: Math.max(240, node.clientWidth - 10), height: window.innerWidth < 600 ? 200 : 280 });
    const plot = new uPlot(Object.assign({ series: series, scales: { x: { time: true } }, legend: { live: true } }, size()), data, node);
    window.addEventListener("resize", () => plot.setSize(size()));
    return plot;
  }

  function liveDevice(url) {
    const chartNode = document.getElementById("chart");
    let plot = null;
    let columns = null;
    const source = new EventSource(url);
    window.addEventListener("pagehide", () => source.close());
    source.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.gone) {
        document.getElementById("device-status").replaceChildren(el("span", { class: "badge off" }, "deleted"));
        source.close();
        return;
      }
      if (m.init) {
        fill("states", m.states, stateRow);
        fill("commands", m.commands, commandRow);
        fill("connection-log", m.log, logRow);
        if (chartNode && m.attributes.length) {
          columns = [[]].concat(m.attributes.map(() => []));
          for (const point of m.points) point.forEach((v, i) => columns[i].push(v));
          plot = makeChart(chartNode, m.attributes, columns);
        }
      }
      if (m.status) {
        document.getElementById("device-status").replaceChildren(...statusNodes(m.status.connected, m.status.since));
        const ban = document.getElementById("device-ban");
        if (m.status.banned_until) {
          ban.replaceChildren(document.createTextNode("banned until "), timeNode(m.status.banned_until));
          ban.hidden = false;
        } else {
          ban.hidden = true;
        }
      }
      if (m.new_points && columns) {
        for (const point of m.new_points) {
          const last = columns[0].length ? columns[0][columns[0].length - 1] : -Infinity;
          if (point[0] < last) continue;
          // the same time again: a state merged into one already drawn
          if (point[0] === last) point.forEach((v, i) => { columns[i][columns[i].length - 1] = v; });
          else point.forEach((v, i) => columns[i].push(v));
        }
        const oldest = columns[0][columns[0].length - 1] - CHART_WINDOW_S;
        let drop = 0;
        while (drop < columns[0].length && (columns[0][drop] < oldest || columns[0].length - drop > MAX_POINTS)) drop++;
        if (drop) columns.forEach((c) => c.splice(0, drop));
        plot.setData(columns);
      }
      if (chartNode && columns) {
        chartNode.dataset.points = String(columns[0].length);
        const empty = chartNode.querySelector(".chart-empty");
        if (empty) empty.hidden = columns[0].length > 0;
      }
      if (m.new_states) prepend("states", m.new_states, stateRow);
      if (m.new_commands) prepend("commands", m.new_commands, commandRow);
      if (m.new_log) prepend("connection-log", m.new_log, logRow);
    };
  }

  // -- the fleet -------------------------------------------------------------------------------
  function liveFleet(url) {
    const node = document.getElementById("fleet-chart");
    const columns = [[], [], []];
    let plot = null;
    const source = new EventSource(url);
    window.addEventListener("pagehide", () => source.close());
    const set = (id, value) => { const n = document.getElementById(id); if (n && value !== undefined) n.textContent = String(value); };
    source.onmessage = (event) => {
      const m = JSON.parse(event.data);
      set("fleet-connected", m.connected);
      set("fleet-devices", m.devices);
      set("fleet-refusals", m.refusals);
      set("fleet-bans", m.bans);
      set("fleet-states-total", m.counters.states_accepted);
      set("fleet-commands-total", m.counters.commands_sent);
      for (const [name, value] of Object.entries(m.counters)) {
        const cell = document.querySelector('[data-counter="' + name + '"]');
        if (cell) cell.textContent = String(value);
      }
      if (m.states_per_s === undefined) return;
      set("fleet-states", m.states_per_s);
      set("fleet-commands", m.commands_per_s);
      columns[0].push(m.time / 1000);
      columns[1].push(m.states_per_s);
      columns[2].push(m.commands_per_s);
      if (columns[0].length > CHART_WINDOW_S) columns.forEach((c) => c.shift());
      if (!plot) plot = makeChart(node, ["states/s", "commands/s"], columns);
      else plot.setData(columns);
      node.dataset.points = String(columns[0].length);
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    showTimes();
    setInterval(() => document.querySelectorAll(".since time[data-ms]").forEach(showTime), 5000);
    document.body.addEventListener("htmx:afterSettle", (event) => showTimes(event.target));
    const page = document.body.dataset.page;
    const live = document.body.dataset.live;
    if (page === "devices") liveDevices();
    else if (page === "device") liveDevice(live);
    else if (page === "fleet") liveFleet(live);
  });
})();
