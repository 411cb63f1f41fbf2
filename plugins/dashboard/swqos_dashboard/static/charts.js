// swqos dashboard: live charts for the Traffic page. No library, no inline script (CSP script-src 'self').
// Polls the JSON feed named by #traffic[data-feed] every data-poll seconds and draws each
// canvas.chart's data-series as lines, oldest point on the left.
"use strict";

(function () {
  const COLORS = ["#2f5fb3", "#b3261e", "#1d7a46", "#9a6400"];

  function draw(canvas, feed) {
    const names = canvas.dataset.series.split(" ");
    const unit = canvas.dataset.unit || "";
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, left = 56, right = 12, top = 12, bottom = 24;
    ctx.clearRect(0, 0, w, h);
    const series = names.map((n) => feed.points[n] || []);
    let max = 0;
    for (const s of series) for (const v of s) if (v !== null && v > max) max = v;
    max = max > 0 ? max * 1.1 : 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = "#d9dee6";
    ctx.fillStyle = "#5c6675";
    for (let i = 0; i <= 4; i++) {
      const y = top + ((h - top - bottom) * i) / 4;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
      const value = max * (1 - i / 4);
      ctx.fillText(value.toFixed(value < 10 ? 2 : 0) + " " + unit, 2, y + 4);
    }
    const minutes = Math.round(feed.window / 60);
    ctx.fillText("-" + minutes + " min", left, h - 6);
    ctx.fillText("now", w - right - 22, h - 6);
    series.forEach((points, k) => {
      const n = points.length;
      if (n < 2) return;
      ctx.strokeStyle = COLORS[k % COLORS.length];
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      let pen = false;
      points.forEach((v, i) => {
        if (v === null) { pen = false; return; }
        const x = left + ((w - left - right) * i) / (n - 1);
        const y = top + (h - top - bottom) * (1 - v / max);
        if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        pen = true;
      });
      ctx.stroke();
      ctx.fillStyle = COLORS[k % COLORS.length];
      points.forEach((v, i) => {  // a point with no neighbour draws no line: mark it
        if (v === null || (points[i - 1] ?? null) !== null || (points[i + 1] ?? null) !== null) return;
        const x = left + ((w - left - right) * i) / (n - 1);
        const y = top + (h - top - bottom) * (1 - v / max);
        ctx.fillRect(x - 2, y - 2, 4, 4);
      });
      ctx.fillText(names[k], left + 8 + k * 110, top + 10);
    });
  }

  function fillTable(id, entries) {
    const body = document.querySelector("#" + id + " tbody");
    if (!body) return;
    body.replaceChildren();
    const keys = Object.keys(entries);
    if (keys.length === 0) keys.push(null);
    for (const key of keys) {
      const row = document.createElement("tr");
      const a = document.createElement("td"), b = document.createElement("td");
      a.textContent = key === null ? "none" : key;  // textContent: labels are never parsed as HTML
      b.textContent = key === null ? "" : String(entries[key]);
      row.append(a, b);
      body.append(row);
    }
  }

  function render(root, feed) {
    for (const el of root.querySelectorAll("[data-total]")) {
      const key = el.dataset.total;
      const v = key in feed.totals ? feed.totals[key] : feed[key];
      el.textContent = v === null || v === undefined ? "-" : String(v);
    }
    for (const canvas of root.querySelectorAll("canvas.chart")) draw(canvas, feed);
    fillTable("by-stage", feed.refusals_by_stage);
    fillTable("by-label", feed.refusals_by_label);
    root.dataset.updated = String(feed.now);
  }

  async function poll(root) {
    try {
      const response = await fetch(root.dataset.feed, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) render(root, await response.json());
    } catch (e) {
      root.dataset.error = String(e);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("traffic");
    if (!root) return;
    poll(root);
    const seconds = Math.max(1, parseInt(root.dataset.poll, 10) || 5);
    setInterval(() => poll(root), seconds * 1000);
  });
})();
