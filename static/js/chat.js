// The web chat (docs/contract.md §9, §14): conversations from /chat/api, models from /api/tags,
// answers from the gateway's reply endpoints. A reply belongs to its conversation, not to this
// page: leaving a conversation (another one, New chat, a reload, a closed tab) only stops *following*
// it; the gateway finishes and stores it, and coming back follows its live tail. Only Stop stops it.
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
  const sidebar = $("chat-sidebar");
  const shell = document.querySelector("[data-chat]");
  const touch = window.matchMedia("(pointer: coarse)");
  const phone = window.matchMedia("(max-width: 760px)");
  // following: the reply this page reads now ({id, controller}); editing: Send replaces the last question.
  const state = { conversations: [], current: null, following: null, editing: false, modelsDown: false };

  async function api(path, options = {}) {
    const headers = { "X-CSRFToken": csrf, ...(options.headers || {}) };
    if (options.body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { credentials: "same-origin", ...options, headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body) });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(refusal(response.status, data.error, response.headers.get("Retry-After")));
    return data;
  }

  function say(text, kind) {
    statusLine.textContent = text || "";
    statusLine.dataset.kind = kind || "";
  }

  // -- refusals in words ------------------------------------------------------------

  function inWords(seconds) {
    if (!Number.isFinite(seconds) || seconds <= 0) return "in a moment";
    if (seconds < 90) return `in ${Math.ceil(seconds)} second${Math.ceil(seconds) === 1 ? "" : "s"}`;
    if (seconds < 5400) return `in about ${Math.round(seconds / 60)} minutes`;
    return `in about ${Math.round(seconds / 3600)} hours`;
  }

  const SERVER_DOWN = "The model server is not answering right now. Try again in a minute.";

  // What happened, said so that a person knows what to do next.
  function refusal(status, error, retryAfter) {
    const text = error || `the server answered ${status}`;
    if (/no healthy|not answering|connect|unreachable/i.test(text) || status === 502 || status === 504) {
      return SERVER_DOWN;
    }
    const notAllowed = /model '(.+)' is not allowed/.exec(text);
    if (notAllowed) return `You may not use the model “${notAllowed[1]}”. Pick another one in the Model list.`;
    if (status === 429) {
      const wait = inWords(Number(retryAfter));
      if (/daily token/i.test(text)) return `You have used today's tokens. Try again ${wait}.`;
      if (/rate limit/i.test(text)) return `You are sending faster than your limit allows. Try again ${wait}.`;
      return `Too many of your requests are waiting. Try again ${wait}.`;
    }
    if (status === 503 && retryAfter) return `The server is busy (${text}). Try again ${inWords(Number(retryAfter))}.`;
    return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
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
      const data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(refusal(response.status, data.error, response.headers.get("Retry-After")));
      const names = (data.models || []).map((m) => m.name).filter((n) => typeof n === "string");
      modelSelect.replaceChildren(...names.map((name) => new Option(name, name)));
      state.modelsDown = false;
      if (!names.length) say("No models are available to you right now.", "error");
    } catch (error) {
      state.modelsDown = true;
      say(error.message === SERVER_DOWN ? "The model server is not answering, so no models can be listed. " +
        "Try again in a minute." : "Could not load the models: " + error.message, "error");
    }
    syncModel();
  }

  function syncModel() {
    const wanted = state.current && state.current.model;
    if (!wanted) return;
    // A conversation keeps its model even when the list could not be loaded.
    if (![...modelSelect.options].some((o) => o.value === wanted)) modelSelect.add(new Option(wanted, wanted));
    modelSelect.value = wanted;
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
    box.message = message;
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
    box.classList.toggle("is-pending", message.status === "streaming");
    box.querySelector(".chat-note")?.remove();
    if (message.status && !["complete", "streaming"].includes(message.status)) {
      const note = document.createElement("p");
      note.className = "chat-note";
      note.textContent = message.status === "stopped" ? "Stopped." : "The answer broke off: " +
        refusal(0, message.error || "error");
      box.appendChild(note);
    }
  }

  function boxes() {
    return [...messages.querySelectorAll(".chat-message")];
  }

  function writing() {
    return boxes().some((box) => box.message.status === "streaming");
  }

  // Copy on every message; Edit on the last question and Regenerate on the last answer when idle.
  function decorate() {
    const all = boxes();
    const busy = writing();
    const lastUser = all.filter((box) => box.dataset.role === "user").pop();
    const last = all[all.length - 1];
    for (const box of all) {
      box.querySelector(".chat-actions")?.remove();
      const bar = document.createElement("div");
      bar.className = "chat-actions";
      const button = (label, action, hint) => {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "button button-ghost button-small";
        b.textContent = label;
        b.dataset.message = action;
        b.title = hint;
        bar.appendChild(b);
      };
      if (box.message.status !== "streaming") button("Copy", "copy", "Copy this message");
      if (!busy && box === lastUser) button("Edit", "edit", "Change this question and ask it again");
      if (!busy && box === last && box.dataset.role === "assistant" && lastUser) {
        button("Regenerate", "regenerate", "Ask for another answer to the last question");
      }
      if (bar.childElementCount) box.appendChild(bar);
    }
    stopButton.disabled = !busy;
    sendButton.disabled = busy;
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

  // Stop reading the reply this page follows; the gateway goes on writing it.
  function unfollow() {
    if (state.following) state.following.controller.abort();
    state.following = null;
  }

  function clear() {
    unfollow();
    stopEditing();
    boxes().forEach((node) => node.remove());
    say("");
  }

  async function open(id) {
    const conversation = await api(`/chat/api/conversations/${id}`);
    clear();
    $("chat-hello").hidden = conversation.messages.length > 0;
    conversation.messages.forEach(drawMessage);
    setCurrent(conversation);
    decorate();
    messages.scrollTop = messages.scrollHeight;
    closeList();
    const pending = boxes().find((box) => box.message.status === "streaming");
    if (pending) follow(conversation.id, pending).catch((error) => say(error.message, "error"));
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
    clear();
    $("chat-hello").hidden = false;
    setCurrent(null);
    decorate();
    closeList();
    input.focus();
  }

  // -- sending, following, stopping -------------------------------------------------

  function stopEditing() {
    state.editing = false;
    input.classList.remove("is-editing");
  }

  async function send(turn) {
    const content = input.value;
    turn = turn || (state.editing ? "edit" : "send");
    if (turn !== "regenerate" && !content.trim()) return;
    if (writing()) { say("An answer is still being written here: wait for it, or press Stop.", "error"); return; }
    const model = modelSelect.value || (state.current && state.current.model);
    if (!model) {
      say(state.modelsDown ? "The model server is not answering, so there is no model to pick. " +
        "Try again in a minute." : "Pick a model first.", "error");
      return;
    }
    if (!state.current) {
      const created = await api("/chat/api/conversations", { method: "POST", body: { model } });
      setCurrent(created);
    }
    const conversation = state.current;
    const before = boxes();
    const lastUser = before.filter((box) => box.dataset.role === "user").pop();
    // What this turn replaces, hidden until the server took it (a refusal brings it back).
    const from = turn === "edit" ? before.indexOf(lastUser) : before.indexOf(lastUser) + 1;
    const replaced = turn === "send" ? [] : before.slice(from);
    replaced.forEach((box) => { box.hidden = true; });
    const question = turn === "regenerate" ? null : drawMessage({ role: "user", content, status: "complete" });
    const answer = { role: "assistant", content: "", status: "streaming" };
    const box = drawMessage(answer);
    if (turn !== "regenerate") input.value = "";
    grow();
    decorate();
    say("Sending…");
    const body = { conversation_id: conversation.id, model, turn };
    if (turn !== "regenerate") body.content = content;
    const controller = new AbortController();
    state.following = { id: conversation.id, controller }; // leaving now only stops this page reading
    let response;
    try {
      response = await fetch("/chat/api/reply", {
        method: "POST", credentials: "same-origin", signal: controller.signal,
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body),
      });
    } catch (error) {
      if (controller.signal.aborted) return; // left for another conversation: the gateway has the turn
      response = { ok: false, status: 0, json: async () => ({ error: SERVER_DOWN }), headers: new Headers() };
    }
    if (!response.ok) {
      // Refused before anything was stored: the conversation stays as it was, the text comes back.
      const data = await response.json().catch(() => ({}));
      box.remove();
      question?.remove();
      replaced.forEach((node) => { node.hidden = false; });
      if (turn !== "regenerate" && !input.value) input.value = content;
      say(refusal(response.status, data.error, response.headers.get("Retry-After")), "error");
      decorate();
      return;
    }
    replaced.forEach((node) => node.remove());
    stopEditing();
    // The turn is stored and titles the conversation before the answer starts: list it now.
    syncList(conversation.id).catch(() => {});
    await read(response, controller, conversation.id, box);
  }

  // Follow the answer being written in conversation ``id`` from where it is now.
  async function follow(id, box) {
    const controller = new AbortController();
    let response;
    try {
      response = await fetch(`/chat/api/reply/${id}`, {
        credentials: "same-origin", signal: controller.signal, headers: { "X-CSRFToken": csrf },
      });
    } catch (error) {
      return;
    }
    if (response.status === 200) {
      box.message.content = ""; // the first event holds what was said so far
      await read(response, controller, id, box);
      return;
    }
    // Finished meanwhile, or being written by another instance of the gateway: look again soon.
    window.setTimeout(() => {
      if (state.current && String(state.current.id) === String(id) && !state.following) {
        open(id).catch(() => {});
      }
    }, response.status === 204 ? 1500 : 3000);
  }

  async function read(response, controller, id, box) {
    state.following = { id, controller };
    const answer = box.message;
    try {
      await readEvents(response, box, answer);
    } catch (error) {
      if (controller.signal.aborted) return; // this page left the conversation: the gateway goes on
      say(refusal(0, error.message), "error");
      return;
    } finally {
      if (state.following && state.following.controller === controller) state.following = null;
    }
    if (answer.status === "streaming") {
      // The stream ended without its last event (a proxy cut it): follow again from where it is.
      if (state.current && String(state.current.id) === String(id)) follow(id, box).catch(() => {});
      return;
    }
    fill(box, answer);
    decorate();
    syncList(id).catch(() => {});
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
              if (!box.isConnected) return;
              fill(box, answer);
              messages.scrollTop = messages.scrollHeight;
            });
          }
        } else if (event.type === "done") {
          answer.status = event.status;
          answer.error = event.error;
          answer.id = event.message_id;
          const words = event.status === "stopped" ? "Stopped." : refusal(0, event.error || event.status);
          say(event.status === "complete" ? "" : words, event.status === "error" ? "error" : "");
        }
      }
    }
  }

  async function stop() {
    if (!state.current) return;
    stopButton.disabled = true;
    try {
      await api("/chat/api/reply/stop", { method: "POST", body: { conversation_id: state.current.id } });
    } catch (error) {
      // Not written here (already finished): the stored conversation says how it ended.
      await open(state.current.id).catch(() => {});
    }
    input.focus(); // back to the box after Stop, for the next question
  }

  function copy(text, button) {
    const done = () => {
      button.textContent = "Copied";
      window.setTimeout(() => { button.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => say("Copying was refused by the browser.", "error"));
    } else {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
      done();
    }
  }

  // -- the composer and the phone drawer ----------------------------------------------

  // The box grows with what is typed, up to a third of the screen.
  function grow() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, Math.round(window.innerHeight / 3)) + "px";
  }

  // On a phone the closed drawer is out of the tab order (and out of the accessibility tree).
  function syncDrawer() {
    const open = shell.classList.contains("list-open");
    sidebar.inert = phone.matches && !open;
    document.querySelector('[data-action="toggle-list"]').setAttribute("aria-expanded", String(open));
  }

  function closeList() {
    shell.classList.remove("list-open");
    syncDrawer();
  }

  // -- wiring -------------------------------------------------------------------

  document.querySelector("#chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    send().catch((error) => say(error.message, "error"));
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends; Shift+Enter adds a line, and so does Enter on a touch keyboard (Send is a button there).
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !touch.matches) {
      event.preventDefault();
      send().catch((error) => say(error.message, "error"));
    } else if (event.key === "Escape" && state.editing) {
      stopEditing();
      input.value = "";
      grow();
      say("");
    }
  });
  input.addEventListener("input", grow);
  stopButton.addEventListener("click", () => { stop().catch((error) => say(error.message, "error")); });
  modelSelect.addEventListener("change", () => {
    if (state.current) {
      api(`/chat/api/conversations/${state.current.id}`, { method: "PATCH", body: { model: modelSelect.value } })
        .then((updated) => { state.current.model = updated.model; })
        .catch((error) => say(error.message, "error"));
    }
  });
  list.addEventListener("click", (event) => {
    const link = event.target.closest("a[data-id]");
    if (!link) return;
    event.preventDefault();
    open(link.dataset.id).catch((error) => say(error.message, "error"));
  });
  messages.addEventListener("click", (event) => {
    const button = event.target.closest("[data-message]");
    if (!button) return;
    const box = button.closest(".chat-message");
    if (button.dataset.message === "copy") copy(box.message.content, button);
    if (button.dataset.message === "regenerate") send("regenerate").catch((error) => say(error.message, "error"));
    if (button.dataset.message === "edit") {
      state.editing = true;
      input.value = box.message.content;
      input.classList.add("is-editing");
      grow();
      input.focus();
      say("Editing your last question: Send asks it again and replaces its answer (Esc cancels).");
    }
  });
  shell.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (!button || button.disabled) return;
    const action = button.dataset.action;
    if (action === "new") newChat();
    if (action === "toggle-list") {
      shell.classList.toggle("list-open");
      syncDrawer();
      if (shell.classList.contains("list-open")) sidebar.querySelector("button, a")?.focus();
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
  phone.addEventListener("change", syncDrawer);

  async function start() {
    syncDrawer();
    if (touch.matches) input.placeholder = "Message (Send to send; Enter adds a line)";
    await Promise.all([loadModels(), refreshList()]);
    const wanted = new URL(window.location.href).searchParams.get("c");
    const first = wanted || (state.conversations[0] && state.conversations[0].id);
    if (first) await open(first).catch(() => setCurrent(null));
    decorate();
    input.focus();
  }
  start().catch((error) => say(error.message, "error"));
})();
