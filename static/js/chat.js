// The web chat (docs/contract.md §9): conversations from /chat/api, models from
// /api/tags, answers streamed as NDJSON events from the gateway's reply endpoint.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const list = $("chat-list");
  const messages = $("chat-messages");
  const input = $("chat-input");
  const modelSelect = $("chat-model");
  const sendButton = $("chat-send");
  const stopButton = $("chat-stop");
  const statusLine = $("chat-status");
  const titleEl = $("chat-title");
  const shell = document.querySelector("[data-chat]");
  const state = { conversations: [], current: null, streaming: null };

  async function api(path, options = {}) {
    const headers = { "X-CSRFToken": csrf, ...(options.headers || {}) };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { credentials: "same-origin", ...options, headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  function say(text, kind) {
    statusLine.textContent = text || "";
    statusLine.dataset.kind = kind || "";
  }

  // -- models -----------------------------------------------------------------

  async function loadModels(retry = true) {
    try {
      const response = await fetch("/api/tags", { credentials: "same-origin" });
      // The gateway learns a brand-new account within a second (its identity refresh): ask again once.
      if (response.status === 401 && retry) {
        await new Promise((resolve) => window.setTimeout(resolve, 1200));
        return loadModels(false);
      }
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
      const names = (data.models || []).map((m) => m.name).filter((n) => typeof n === "string");
      modelSelect.replaceChildren(...names.map((name) => new Option(name, name)));
      if (!names.length) say("No models are available to you right now.", "error");
    } catch (error) {
      say("Could not load the models: " + error.message, "error");
    }
    syncModel();
  }

  function syncModel() {
    const wanted = state.current && state.current.model;
    if (wanted && [...modelSelect.options].some((o) => o.value === wanted)) modelSelect.value = wanted;
  }

  // -- conversations ----------------------------------------------------------

  function drawList() {
    list.replaceChildren();
    for (const conversation of state.conversations) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = "?c=" + conversation.id;
      link.textContent = conversation.title;
      link.dataset.id = conversation.id;
      if (state.current && state.current.id === conversation.id) link.setAttribute("aria-current", "true");
      item.appendChild(link);
      list.appendChild(item);
    }
    $("chat-list-empty").hidden = state.conversations.length > 0;
  }

  function drawMessage(message) {
    const box = document.createElement("article");
    box.className = "chat-message chat-" + message.role;
    box.dataset.role = message.role;
    const body = document.createElement("div");
    body.className = "chat-body";
    box.appendChild(body);
    fill(box, message);
    $("chat-hello").hidden = true;
    messages.appendChild(box);
    return box;
  }

  function fill(box, message) {
    const body = box.querySelector(".chat-body");
    if (message.role === "assistant") {
      body.replaceChildren(window.renderMarkdown(message.content));
    } else {
      body.textContent = message.content;
    }
    box.querySelector(".chat-note")?.remove();
    if (message.status && message.status !== "complete") {
      const note = document.createElement("p");
      note.className = "chat-note";
      note.textContent = message.status === "stopped" ? "Stopped." : "The answer broke off: " + (message.error || "error");
      box.appendChild(note);
    }
  }

  function setCurrent(conversation) {
    state.current = conversation;
    titleEl.textContent = conversation ? conversation.title : "New chat";
    for (const action of ["rename", "delete"]) {
      document.querySelector(`[data-action="${action}"]`).disabled = !conversation;
    }
    const exportLink = document.querySelector('[data-action="export"]');
    if (conversation) {
      exportLink.href = `/chat/api/conversations/${conversation.id}/export`;
      exportLink.removeAttribute("aria-disabled");
    } else {
      exportLink.removeAttribute("href");
      exportLink.setAttribute("aria-disabled", "true");
    }
    const url = new URL(window.location.href);
    if (conversation) url.searchParams.set("c", conversation.id); else url.searchParams.delete("c");
    window.history.replaceState(null, "", url);
    syncModel();
    drawList();
  }

  async function open(id) {
    const conversation = await api(`/chat/api/conversations/${id}`);
    messages.querySelectorAll(".chat-message").forEach((node) => node.remove());
    $("chat-hello").hidden = conversation.messages.length > 0;
    conversation.messages.forEach(drawMessage);
    setCurrent(conversation);
    messages.scrollTop = messages.scrollHeight;
    shell.classList.remove("list-open");
  }

  async function refreshList() {
    state.conversations = await api("/chat/api/conversations");
    drawList();
  }

  // The list as stored, and the open conversation's title from it.
  async function syncList(id) {
    await refreshList();
    const fresh = state.conversations.find((c) => c.id === id);
    if (fresh && state.current && state.current.id === fresh.id) setCurrent({ ...state.current, ...fresh });
  }

  function newChat() {
    if (state.streaming) return;
    messages.querySelectorAll(".chat-message").forEach((node) => node.remove());
    $("chat-hello").hidden = false;
    setCurrent(null);
    say("");
    shell.classList.remove("list-open");
    input.focus();
  }

  // -- sending and streaming ----------------------------------------------------

  async function send() {
    const content = input.value;
    if (!content.trim() || state.streaming) return;
    const model = modelSelect.value;
    if (!model) { say("Pick a model first.", "error"); return; }
    if (!state.current) {
      const created = await api("/chat/api/conversations", { method: "POST", body: { model } });
      setCurrent(created);
    }
    const conversation = state.current;
    input.value = "";
    drawMessage({ role: "user", content });
    const answer = { role: "assistant", content: "", status: "complete" };
    const box = drawMessage(answer);
    box.classList.add("is-pending");
    const controller = new AbortController();
    state.streaming = controller;
    sendButton.disabled = true;
    stopButton.disabled = false;
    say("Sending…");
    try {
      const response = await fetch("/chat/api/reply", {
        method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ conversation_id: conversation.id, content, model }),
      });
      if (!response.ok) {
        const data = await response.json().catch(() => ({}));
        throw new Error(data.error || `HTTP ${response.status}`);
      }
      // The message is stored and titles the conversation before the answer starts: list it now.
      syncList(conversation.id).catch(() => {});
      await readEvents(response, box, answer);
    } catch (error) {
      if (controller.signal.aborted) {
        answer.status = "stopped";
        say("Stopped.");
      } else {
        answer.status = "error";
        answer.error = error.message;
        say(error.message, "error");
      }
      fill(box, answer);
    } finally {
      box.classList.remove("is-pending");
      state.streaming = null;
      sendButton.disabled = false;
      stopButton.disabled = true;
      await syncList(conversation.id).catch(() => {});
    }
  }

  // The scheduler's estimate is null until it has one: then only the place is shown.
  function queueText(position, etaSeconds) {
    const place = `Waiting in the queue: position ${position}`;
    if (typeof etaSeconds !== "number" || !Number.isFinite(etaSeconds) || etaSeconds < 0) return `${place}.`;
    const eta = etaSeconds < 60 ? `${Math.max(1, Math.round(etaSeconds))} s` : `${Math.round(etaSeconds / 60)} min`;
    return `${place}, about ${eta}.`;
  }

  async function readEvents(response, box, answer) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let drawn = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        const event = JSON.parse(line);
        if (event.type === "queued") {
          say(queueText(event.position, event.eta_s));
        } else if (event.type === "started") {
          say("Answering…");
        } else if (event.type === "token") {
          answer.content += event.content;
          if (!drawn) {
            drawn = true;
            window.requestAnimationFrame(() => {
              drawn = false;
              fill(box, answer);
              messages.scrollTop = messages.scrollHeight;
            });
          }
        } else if (event.type === "done") {
          answer.status = event.status;
          answer.error = event.error;
          say(event.status === "complete" ? "" : event.error || event.status, event.status === "complete" ? "" : "error");
        }
      }
    }
    fill(box, answer);
  }

  // -- wiring -------------------------------------------------------------------

  document.querySelector("#chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send().catch((error) => say(error.message, "error"));
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send().catch((error) => say(error.message, "error"));
    }
  });
  stopButton.addEventListener("click", () => state.streaming && state.streaming.abort());
  modelSelect.addEventListener("change", () => {
    if (state.current) {
      api(`/chat/api/conversations/${state.current.id}`, { method: "PATCH", body: { model: modelSelect.value } })
        .then((updated) => { state.current.model = updated.model; })
        .catch((error) => say(error.message, "error"));
    }
  });
  list.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-id]");
    if (!link || state.streaming) return;
    event.preventDefault();
    open(link.dataset.id).catch((error) => say(error.message, "error"));
  });
  shell.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (!button || button.disabled) return;
    const action = button.dataset.action;
    if (action === "new") newChat();
    if (action === "toggle-list") {
      const open = shell.classList.toggle("list-open");
      button.setAttribute("aria-expanded", String(open));
    }
    if (action === "rename" && state.current) {
      const title = window.prompt("New title", state.current.title);
      if (title === null) return;
      api(`/chat/api/conversations/${state.current.id}`, { method: "PATCH", body: { title } })
        .then((updated) => { setCurrent({ ...state.current, ...updated }); return refreshList(); })
        .catch((error) => say(error.message, "error"));
    }
    if (action === "delete" && state.current) {
      if (!window.confirm(`Delete “${state.current.title}”?`)) return;
      api(`/chat/api/conversations/${state.current.id}`, { method: "DELETE" })
        .then(() => { newChat(); return refreshList(); })
        .catch((error) => say(error.message, "error"));
    }
  });

  async function start() {
    await Promise.all([loadModels(), refreshList()]);
    const wanted = new URL(window.location.href).searchParams.get("c");
    const first = wanted || (state.conversations[0] && state.conversations[0].id);
    if (first) await open(first).catch(() => setCurrent(null));
    input.focus();
  }
  start().catch((error) => say(error.message, "error"));
})();
