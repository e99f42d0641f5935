// The dashboard's live part: polls /api/admin/stats (same origin, session cookie), fills the
// cards and the tables, and draws the charts with the vendored Chart.js. No inline script (CSP).
"use strict";

(() => {
  const board = document.getElementById("live-stats");
  if (!board) {
    return;
  }
  const STATS_URL = board.dataset.statsUrl;
  const POLL_MS = Number(board.dataset.pollMs) || 1500;
  const HIDDEN_POLL_MS = 5000; // a tab in the background needs no second-by-second numbers
  const FETCH_TIMEOUT_MS = 5000;
  const HISTORY_STEP_MS = 10000; // one server-side chart point per 10 s
  const KEEP_MS = 30 * 60 * 1000;
  const MIN_SPAN_MS = 2 * 60 * 1000;
  const SOURCES = {
    direct_api: { label: "Direct API", color: "#12a594" },
    custom_app: { label: "Custom app", color: "#2f6fb5" },
    web_chat: { label: "Web chat", color: "#7a4bb3" },
  };
  const COLORS = { queue: "#d97706", active: "#0b5563", tokens: "#0b5563", grid: "#edf1f4", ink: "#4a5b68" };

  const pill = document.querySelector("[data-live-state]");
  const pillText = document.querySelector("[data-live-status]");
  let windowMs = 15 * 60 * 1000;
  let samples = []; // one per successful poll: {t, queue, active}
  let latest = null;
  let seenTraffic = false;
  let charts = null;
  let timer = null;

  // ---- formatting ---------------------------------------------------------

  const number = (value) => Math.round(value).toLocaleString("en");
  const rate = (value) => (value >= 100 ? number(value) : (Math.round(value * 10) / 10).toLocaleString("en"));
  const plural = (count, word) => `${number(count)} ${word}${count === 1 ? "" : "s"}`;
  function seconds(value) {
    if (value < 1) {
      return `${Math.round(value * 1000)} ms`;
    }
    if (value < 10) {
      return `${value.toFixed(1)} s`;
    }
    if (value < 60) {
      return `${Math.round(value)} s`;
    }
    const minutes = Math.floor(value / 60);
    return `${minutes} min ${String(Math.round(value - minutes * 60)).padStart(2, "0")} s`;
  }
  const axisSeconds = (value) => (value === 0 ? "0" : seconds(value));
  function tickStep(span) {
    // About five labels, on whole minutes (or 30 s for short spans).
    const steps = [30e3, 60e3, 120e3, 180e3, 300e3, 600e3];
    return steps.find((step) => span / step <= 6) || 600e3;
  }
  // One time convention on the whole panel (docs/contract.md §11): UTC, as the tables show it.
  const clock = (ms, withSeconds) =>
    new Date(ms).toLocaleTimeString("en-GB", {
      timeZone: "UTC",
      hour: "2-digit",
      minute: "2-digit",
      second: withSeconds ? "2-digit" : undefined,
    });

  // ---- cards and tables ---------------------------------------------------

  function setLive(name, value, note) {
    for (const element of board.querySelectorAll(`[data-live="${name}"]`)) {
      element.textContent = value;
    }
    if (note !== undefined) {
      for (const element of board.querySelectorAll(`[data-live-note="${name}"]`)) {
        element.textContent = note;
      }
    }
  }

  function renderCards(stats) {
    const backends = stats.backends || [];
    const slots = backends.reduce((total, backend) => total + (backend.slots || 0), 0);
    const inUse = backends.reduce((total, backend) => total + (backend.in_use || 0), 0);
    const up = backends.filter((backend) => backend.healthy).length;
    const down = backends.length - up;
    const answered = Object.values(stats.status_counts || {}).reduce((total, count) => total + count, 0);

    setLive(
      "queue_length",
      number(stats.queue_length),
      stats.queue_length ? `longest wait ${seconds(stats.oldest_wait || 0)}` : "nobody waiting",
    );
    setLive("active_requests", number(stats.active_requests), `of ${plural(slots, "slot")}`);
    setLive("requests_per_minute", number(stats.requests_per_minute), "last minute");
    const waitNote = answered ? "last 5 minutes" : "no requests in 5 min";
    setLive("average_wait_time", answered ? seconds(stats.average_wait_time) : "—", waitNote);
    setLive("p95_wait_time", answered ? seconds(stats.p95_wait_time) : "—", waitNote);
    // Only while something holds a slot: an idle server generates nothing, whatever the last minute did.
    const generating = stats.active_requests > 0 && stats.tokens_per_second > 0;
    setLive(
      "tokens_per_second",
      generating ? rate(stats.tokens_per_second) : "—",
      generating ? "while generating" : stats.active_requests > 0 ? "starting…" : "idle",
    );
    setLive(
      "backends",
      backends.length ? `${up} up` : "none",
      `${down ? `${number(down)} down · ` : ""}${number(inUse)} of ${plural(slots, "slot")} in use`,
    );
    board.querySelector('[data-kpi="backends"]').classList.toggle("is-alert", down > 0);
    board.querySelector('[data-kpi="queue_length"]').classList.toggle("is-busy", stats.queue_length > 0);
  }

  function renderSources(stats) {
    for (const row of document.querySelectorAll("tr[data-source]")) {
      const numbers = (stats.by_source || {})[row.dataset.source] || {};
      const idle = !numbers.requests_per_minute && !numbers.average_wait_time;
      const noGpu = !numbers.gpu_seconds;
      for (const cell of row.querySelectorAll("[data-cell]")) {
        const name = cell.dataset.cell;
        const value = numbers[name] || 0;
        if (name === "gpu_seconds") {
          cell.textContent = noGpu ? "—" : seconds(value);
        } else if (name === "gpu_share") {
          cell.textContent = noGpu ? "—" : `${Math.round(value * 100)} %`;
        } else {
          const isWait = name.endsWith("wait_time");
          cell.textContent = isWait ? (idle ? "—" : seconds(value)) : number(value);
        }
      }
    }
  }

  function renderBackends(stats) {
    const list = document.querySelector("[data-backends]");
    const items = (stats.backends || []).map((backend) => {
      const item = document.createElement("li");
      item.className = `backend ${backend.healthy ? "is-up" : "is-down"}`;
      const head = document.createElement("div");
      head.className = "backend-head";
      const state = document.createElement("span");
      state.className = `badge ${backend.healthy ? "badge-success" : "badge-danger"}`;
      state.textContent = backend.healthy ? "Up" : "Down";
      const url = document.createElement("span");
      url.className = "mono backend-url";
      url.textContent = backend.url;
      head.append(state, url);
      const meter = document.createElement("div");
      meter.className = "meter";
      meter.setAttribute("role", "meter");
      meter.setAttribute("aria-valuemin", "0");
      meter.setAttribute("aria-valuemax", String(backend.slots || 0));
      meter.setAttribute("aria-valuenow", String(backend.in_use || 0));
      meter.setAttribute("aria-label", `Slots in use on ${backend.url}`);
      const fill = document.createElement("span");
      fill.style.width = `${backend.slots ? Math.min(100, (100 * backend.in_use) / backend.slots) : 0}%`;
      meter.append(fill);
      const note = document.createElement("span");
      note.className = "backend-note";
      note.textContent = `${number(backend.in_use || 0)} of ${plural(backend.slots || 0, "slot")} in use`;
      const models = document.createElement("p");
      models.className = "backend-models";
      models.dataset.backendModels = "";
      if (backend.models && backend.models.length) {
        models.textContent = `Installed models: ${backend.models.join(", ")}`;
      } else {
        models.textContent = backend.models ? "No models installed" : "Models not known yet (backend not reached)";
      }
      item.append(head, meter, note, models);
      return item;
    });
    if (!items.length) {
      const item = document.createElement("li");
      item.className = "muted";
      item.textContent = "No backends configured";
      items.push(item);
    }
    list.replaceChildren(...items);

    const chips = document.querySelector("[data-status-counts]");
    const counts = Object.entries(stats.status_counts || {});
    if (!counts.length) {
      const none = document.createElement("span");
      none.className = "muted";
      none.textContent = "No requests yet";
      chips.replaceChildren(none);
      return;
    }
    chips.replaceChildren(
      ...counts.map(([status, count]) => {
        const code = Number(status);
        const chip = document.createElement("span");
        const kind = code < 300 ? "success" : code === 499 ? "neutral" : code < 500 ? "warn" : "danger";
        chip.className = `badge badge-${kind}`;
        chip.textContent = `${status} × ${number(count)}`;
        chip.title = code === 499 ? "the client left before the end" : `HTTP ${status}`;
        return chip;
      }),
    );
  }

  // ---- charts ---------------------------------------------------------------

  function lineChart(canvasId, datasets, formatY, options = {}) {
    const canvas = document.getElementById(canvasId);
    return new window.Chart(canvas, {
      type: "line",
      data: { datasets },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        spanGaps: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        elements: { point: { radius: 0, hoverRadius: 4, hitRadius: 6 }, line: { borderWidth: 2, tension: 0.2 } },
        scales: {
          x: {
            type: "linear",
            grid: { display: false },
            border: { color: "#c9d3db" },
            // Ticks on whole steps of the clock (…:00, …:30), not wherever the window starts.
            afterBuildTicks: (scale) => {
              const step = scale.options.ticks.stepSize;
              if (!step) {
                return;
              }
              const ticks = [];
              for (let value = Math.ceil(scale.min / step) * step; value <= scale.max; value += step) {
                ticks.push({ value });
              }
              scale.ticks = ticks;
            },
            ticks: {
              color: COLORS.ink,
              maxRotation: 0,
              includeBounds: false,
              autoSkip: true,
              // Ticks closer than a minute apart need their seconds to tell them apart.
              callback: (value, index, ticks) =>
                clock(value, ticks.length > 1 && ticks[1].value - ticks[0].value < 60e3),
            },
          },
          y: {
            beginAtZero: true,
            suggestedMax: options.suggestedMax || 1,
            grid: { color: COLORS.grid },
            border: { display: false },
            ticks: { color: COLORS.ink, precision: options.precision, maxTicksLimit: 5, callback: formatY },
          },
        },
        plugins: {
          legend: {
            position: "bottom",
            labels: {
              usePointStyle: true,
              pointStyle: "circle",
              boxWidth: 8,
              boxHeight: 8,
              color: COLORS.ink,
              padding: 14,
              // The wait chart has a median and a p95 line per source: one legend entry for both.
              filter: (item) => !options.pairedLegend || item.datasetIndex % 2 === 0,
              generateLabels: (chart) =>
                window.Chart.defaults.plugins.legend.labels.generateLabels(chart).map((item) => ({
                  ...item,
                  text: options.pairedLegend ? item.text.replace(/ median$/, "") : item.text,
                  fillStyle: item.strokeStyle,
                  lineDash: [],
                })),
            },
            onClick: (event, item, legend) => {
              const chart = legend.chart;
              const indexes = options.pairedLegend ? [item.datasetIndex, item.datasetIndex + 1] : [item.datasetIndex];
              const visible = chart.isDatasetVisible(item.datasetIndex);
              indexes.forEach((index) => chart.setDatasetVisibility(index, !visible));
              chart.update("none");
            },
          },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? clock(items[0].parsed.x, true) : ""),
              label: (item) => `${item.dataset.label}: ${item.parsed.y === null ? "—" : formatY(item.parsed.y)}`,
            },
          },
        },
      },
    });
  }

  function makeCharts() {
    const sourceSets = (dashed) =>
      Object.entries(SOURCES).map(([, source]) => ({
        label: source.label,
        data: [],
        borderColor: source.color,
        backgroundColor: source.color,
        borderDash: dashed ? [5, 4] : [],
        pointRadius: 2,
      }));
    const waitSets = Object.entries(SOURCES).flatMap(([, source]) => [
      { label: `${source.label} median`, data: [], borderColor: source.color, backgroundColor: source.color, pointRadius: 2 },
      {
        label: `${source.label} p95`,
        data: [],
        borderColor: source.color,
        backgroundColor: source.color,
        borderDash: [5, 4],
        borderWidth: 1.5,
        pointRadius: 2,
      },
    ]);
    return {
      queue: lineChart(
        "chart-queue",
        [
          { label: "Waiting", data: [], borderColor: COLORS.queue, backgroundColor: "rgba(217, 119, 6, 0.12)", fill: true, stepped: true },
          { label: "Active", data: [], borderColor: COLORS.active, backgroundColor: "rgba(11, 85, 99, 0.10)", fill: true, stepped: true },
        ],
        (value) => number(value),
        { precision: 0, suggestedMax: 2 },
      ),
      rate: lineChart("chart-rate", sourceSets(false), (value) => rate(value), { suggestedMax: 2 }),
      wait: lineChart("chart-wait", waitSets, axisSeconds, { suggestedMax: 0.5, pairedLegend: true }),
      gpu: lineChart("chart-gpu", sourceSets(false), (value) => `${Math.round(value)} %`, { suggestedMax: 100 }),
      tokens: lineChart(
        "chart-tokens",
        [{ label: "Tokens per second", data: [], borderColor: COLORS.tokens, backgroundColor: "rgba(11, 85, 99, 0.10)", fill: true, pointRadius: 2 }],
        (value) => rate(value),
        { suggestedMax: 10 },
      ),
    };
  }

  function historyOf(stats) {
    // A point describes the 10 s after its start: it is drawn where those 10 s end.
    return (stats.history || []).map((point) => ({ ...point, t: Date.parse(point.at) + HISTORY_STEP_MS }));
  }

  function rollingMinute(history, source) {
    // Requests finished in the minute before each point: the same measure as the card, so the
    // line ends on the card's live value. A point's rate is its 10 s count times six.
    const perMinute = 60000 / HISTORY_STEP_MS;
    return history.map((point, index) => {
      const minute = history.slice(Math.max(0, index - perMinute + 1), index + 1);
      const count = minute.reduce((total, p) => total + p.by_source[source].requests_per_minute / perMinute, 0);
      return { x: point.t, y: Math.round(count) };
    });
  }

  function renderCharts(stats, now) {
    if (!window.Chart) {
      return; // the vendored library did not load: cards and tables still work
    }
    charts = charts || makeCharts();
    const history = historyOf(stats);
    const firstSample = samples.length ? samples[0].t : Infinity;
    const earlier = history.filter((point) => point.t < firstSample);
    const queue = [
      ...earlier.map((point) => ({ x: point.t, y: point.queue_length })),
      ...samples.map((sample) => ({ x: sample.t, y: sample.queue })),
    ];
    const active = [
      ...earlier.map((point) => ({ x: point.t, y: point.active_requests })),
      ...samples.map((sample) => ({ x: sample.t, y: sample.active })),
    ];
    charts.queue.data.datasets[0].data = queue;
    charts.queue.data.datasets[1].data = active;

    const sources = Object.keys(SOURCES);
    sources.forEach((source, index) => {
      // The last point is the live rolling minute, so the line reaches "now".
      charts.rate.data.datasets[index].data = [
        ...rollingMinute(history, source),
        { x: now, y: stats.by_source[source].requests_per_minute },
      ];
      const measured = (point) => point.by_source[source].requests_per_minute || point.by_source[source].p95_wait_time;
      charts.wait.data.datasets[2 * index].data = history.map((point) => ({
        x: point.t,
        y: measured(point) ? point.by_source[source].p50_wait_time : null,
      }));
      charts.wait.data.datasets[2 * index + 1].data = history.map((point) => ({
        x: point.t,
        y: measured(point) ? point.by_source[source].p95_wait_time : null,
      }));
    });
    // Each source's share of the GPU time that ended in each 10 s point (none used: no point).
    history.forEach((point, pointIndex) => {
      const total = sources.reduce((sum, source) => sum + (point.by_source[source].gpu_seconds || 0), 0);
      sources.forEach((source, index) => {
        if (pointIndex === 0) {
          charts.gpu.data.datasets[index].data = [];
        }
        const used = point.by_source[source].gpu_seconds || 0;
        charts.gpu.data.datasets[index].data.push({ x: point.t, y: total ? (100 * used) / total : null });
      });
    });
    if (!history.length) {
      charts.gpu.data.datasets.forEach((dataset) => {
        dataset.data = [];
      });
    }
    charts.tokens.data.datasets[0].data = [
      ...history.map((point) => ({ x: point.t, y: point.tokens_per_second || null })),
      { x: now, y: stats.tokens_per_second || null },
    ];

    // A fresh gateway has only minutes of history: draw what there is across the whole width.
    const earliest = history.length ? history[0].t - HISTORY_STEP_MS : firstSample;
    const start = Math.max(now - windowMs, Math.min(earliest, now - MIN_SPAN_MS));
    for (const chart of Object.values(charts)) {
      chart.options.scales.x.min = start;
      chart.options.scales.x.max = now;
      chart.options.scales.x.ticks.stepSize = tickStep(now - start);
      chart.update("none");
    }
    const inWindow = (points) => points.some((point) => point.x >= now - windowMs && point.y);
    const anyIn = (chart) => chart.data.datasets.some((dataset) => inWindow(dataset.data));
    showEmpty("chart-queue", !seenTraffic, "No requests yet");
    showEmpty("chart-rate", !seenTraffic, "No requests yet");
    showEmpty("chart-wait", !anyIn(charts.wait), seenTraffic ? "No finished requests in this window" : "No requests yet");
    showEmpty("chart-tokens", !anyIn(charts.tokens), seenTraffic ? "Nothing generated in this window" : "No requests yet");
    showEmpty("chart-gpu", !anyIn(charts.gpu), seenTraffic ? "No GPU time in this window" : "No requests yet");
  }

  function showEmpty(canvasId, empty, text) {
    const overlay = document.querySelector(`[data-empty-for="${canvasId}"]`);
    overlay.textContent = text;
    overlay.hidden = !empty;
    overlay.parentElement.classList.toggle("is-empty", empty);
  }

  function noteTraffic(stats) {
    const history = stats.history || [];
    seenTraffic =
      seenTraffic ||
      stats.queue_length > 0 ||
      stats.active_requests > 0 ||
      Object.keys(stats.status_counts || {}).length > 0 ||
      history.some(
        (point) =>
          point.queue_length || point.active_requests || Object.values(point.by_source).some((s) => s.requests_per_minute),
      );
  }

  // ---- polling --------------------------------------------------------------

  function setState(state, text) {
    pill.dataset.liveState = state;
    pillText.textContent = text;
    board.classList.toggle("is-stale", state === "down");
  }

  function render(stats) {
    const now = Date.parse(stats.generated_at) || Date.now();
    latest = stats;
    if (!samples.length || samples[samples.length - 1].t < now) {
      samples.push({ t: now, queue: stats.queue_length, active: stats.active_requests });
    }
    samples = samples.filter((sample) => sample.t > now - KEEP_MS);
    noteTraffic(stats);
    renderCards(stats);
    renderSources(stats);
    renderBackends(stats);
    renderCharts(stats, now);
  }

  async function poll() {
    window.clearTimeout(timer);
    try {
      const response = await fetch(STATS_URL, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      if (!response.ok) {
        const signedOut = response.status === 401 || response.status === 403;
        throw new Error(signedOut ? "your session has ended: reload the page to sign in" : `HTTP ${response.status}`);
      }
      render(await response.json());
      setState("live", `Live · updated ${clock(Date.now(), true)} UTC`);
    } catch (error) {
      const reason = error && error.name === "TimeoutError" ? "no answer" : (error && error.message) || "unreachable";
      setState("down", `Live data unavailable (${reason}) — retrying`);
    } finally {
      timer = window.setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
    }
  }

  for (const button of document.querySelectorAll("[data-window]")) {
    button.addEventListener("click", () => {
      windowMs = Number(button.dataset.window) * 1000;
      for (const other of document.querySelectorAll("[data-window]")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      if (latest) {
        renderCharts(latest, Date.parse(latest.generated_at) || Date.now());
      }
    });
  }
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      poll();
    }
  });
  poll();
})();
