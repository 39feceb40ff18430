// The Tidings web console: the WebSocket API for queues and messages, the
// HTTP API for the extensions the socket does not carry (deliveries,
// redrive). No framework, no build step: this file is what the browser runs.
"use strict";

(() => {
  const REFRESH_MS = 1000;
  const RECONNECT_MS = 2000;
  const PAGE = 20;
  // Stats cost one request a queue a second: a console is for looking, so
  // it watches the first pages only.
  const MAX_QUEUES = 100;
  const SHOWN_DELIVERIES = 5;

  const $ = (id) => document.getElementById(id);

  const state = {
    socket: null,
    project: "",
    token: "",
    // One Client-ID for the page: with echo on, a peek shows our own posts too.
    clientId: newUuid(),
    timer: null,
    generation: 0,
  };

  function newUuid() {
    if (window.crypto.randomUUID) return window.crypto.randomUUID();
    // randomUUID exists only in secure contexts; a plain-http host has not it.
    const b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  class ApiError extends Error {
    constructor(status, body) {
      super(describeError(status, body));
      this.status = status;
    }
  }

  function describeError(status, body) {
    if (body && typeof body === "object") {
      const parts = [body.error || body.title, body.exception || body.description];
      const text = parts.filter(Boolean).join(": ");
      if (text) return `${status} ${text}`;
    }
    return `${status} ${typeof body === "string" ? body : "request failed"}`;
  }

  // --- the WebSocket API ----------------------------------------------------

  // Replies come back in the order of the requests (the server answers a
  // socket's frames one after another), so a FIFO of waiters pairs them.
  class Socket {
    constructor(url) {
      this.url = url;
      this.waiting = [];
      this.ws = null;
      this.onclose = null;
    }

    open() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(this.url);
        this.ws = ws;
        ws.onopen = () => resolve(this);
        ws.onerror = () => reject(new Error("the WebSocket could not be opened"));
        ws.onmessage = (event) => this.receive(event.data);
        ws.onclose = () => {
          for (const waiter of this.waiting.splice(0)) {
            waiter.reject(new Error("the WebSocket closed"));
          }
          reject(new Error("the WebSocket closed"));
          if (this.onclose) this.onclose();
        };
      });
    }

    close() {
      this.onclose = null;
      if (this.ws) this.ws.close();
    }

    receive(data) {
      let frame;
      try {
        frame = JSON.parse(data);
      } catch (e) {
        return;
      }
      if (!frame || !("request" in frame)) return; // a pushed notification
      const waiter = this.waiting.shift();
      if (waiter) waiter.resolve({ status: frame.headers.status, body: frame.body });
    }

    send(action, body, headers) {
      return new Promise((resolve, reject) => {
        this.waiting.push({ resolve, reject });
        this.ws.send(JSON.stringify({ action, headers, body }));
      });
    }
  }

  function headers() {
    const h = { "Client-ID": state.clientId };
    if (state.project) h["X-Project-ID"] = state.project;
    return h;
  }

  async function call(action, body) {
    if (!state.socket) throw new Error("not connected");
    const reply = await state.socket.send(action, body || {}, headers());
    if (reply.status >= 400) throw new ApiError(reply.status, reply.body);
    return reply.body;
  }

  // --- the HTTP API (extensions the socket does not carry) -----------------

  async function http(method, path, body) {
    const h = { ...headers(), Accept: "application/json" };
    if (state.token) h["X-Auth-Token"] = state.token;
    if (body !== undefined) h["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
    });
    const text = await response.text();
    const document = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, document);
    return document;
  }

  const queuePath = (name) => `/v2/queues/${encodeURIComponent(name)}`;

  // --- connection -------------------------------------------------------------

  function setStatus(kind, text) {
    const el = $("status");
    el.className = `status ${kind}`;
    el.textContent = text;
  }

  function log(text, isError) {
    const line = document.createElement("div");
    line.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    if (isError) line.className = "error";
    const footer = $("log");
    footer.prepend(line);
    while (footer.childElementCount > 8) footer.lastElementChild.remove();
  }

  function socketUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/`;
  }

  async function connect() {
    const generation = ++state.generation;
    stopRefreshing();
    if (state.socket) state.socket.close();
    state.socket = null;
    state.project = $("project").value.trim();
    state.token = $("token").value.trim();
    window.localStorage.setItem("tidings.project", state.project);
    setStatus("idle", "Connecting…");
    const socket = new Socket(socketUrl());
    try {
      await socket.open();
      if (state.token) {
        const reply = await socket.send("authenticate", {}, {
          "X-Auth-Token": state.token,
          ...(state.project ? { "X-Project-ID": state.project } : {}),
        });
        if (reply.status !== 200) throw new ApiError(reply.status, reply.body);
      }
    } catch (error) {
      socket.close();
      if (generation === state.generation) setStatus("error", `Not connected: ${error.message}`);
      return;
    }
    if (generation !== state.generation) {
      socket.close();
      return;
    }
    state.socket = socket;
    socket.onclose = () => {
      if (generation !== state.generation) return;
      state.socket = null;
      stopRefreshing();
      setStatus("error", "Disconnected; reconnecting…");
      window.setTimeout(() => {
        if (generation === state.generation) connect();
      }, RECONNECT_MS);
    };
    await refreshLoop(generation);
  }

  function stopRefreshing() {
    if (state.timer !== null) window.clearTimeout(state.timer);
    state.timer = null;
  }

  async function refreshLoop(generation) {
    try {
      await refreshQueues();
      setStatus("live", `Live · ${state.project || "token's project"}`);
    } catch (error) {
      if (generation !== state.generation) return;
      setStatus("error", error.message);
      // Refused credentials will not get better by asking again.
      if (error.status === 401 || error.status === 403) return;
    }
    if (generation === state.generation && state.socket) {
      state.timer = window.setTimeout(() => refreshLoop(generation), REFRESH_MS);
    }
  }

  // --- queues -----------------------------------------------------------------

  async function listQueueNames() {
    const names = [];
    let marker;
    while (names.length < MAX_QUEUES) {
      const body = { limit: PAGE };
      if (marker) body.marker = marker;
      const page = await call("queue_list", body);
      const queues = page.queues || [];
      for (const q of queues) names.push(q.name);
      if (queues.length < PAGE) break;
      marker = queues[queues.length - 1].name;
    }
    return names;
  }

  async function refreshQueues() {
    const names = await listQueueNames();
    // Sent together: the socket answers them in order.
    const stats = await Promise.all(
      names.map((name) => call("queue_get_stats", { queue_name: name })));
    renderQueues(names, stats.map((s) => s.messages));
    $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  function formatAge(seconds) {
    if (seconds === undefined || seconds === null) return "–";
    if (seconds < 120) return `${seconds} s`;
    if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
    if (seconds < 172800) return `${Math.floor(seconds / 3600)} h`;
    return `${Math.floor(seconds / 86400)} d`;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  // Rows are kept and their cells rewritten, not rebuilt: a row stays the
  // same element from one refresh to the next, under the user's pointer too.
  function renderQueues(names, stats) {
    const tbody = $("queues").tBodies[0];
    const selected = $("queue-name").value.trim();
    const existing = new Map(Array.from(tbody.rows, (tr) => [tr.dataset.queue, tr]));
    const rows = names.map((name, i) => {
      let tr = existing.get(name);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.queue = name;
        tr.append(cell(name, "name"), cell("", "num total"), cell("", "num free"),
          cell("", "num claimed"), cell("", "num oldest"));
        tr.addEventListener("click", () => selectQueue(name));
      }
      const s = stats[i];
      const [, total, free, claimed, oldest] = tr.cells;
      total.textContent = String(s.total);
      free.textContent = String(s.free);
      claimed.textContent = String(s.claimed);
      oldest.textContent = formatAge(s.oldest && s.oldest.age);
      tr.classList.toggle("selected", name === selected);
      return tr;
    });
    tbody.replaceChildren(...rows);
    $("no-queues").hidden = names.length > 0;
  }

  function selectQueue(name) {
    $("queue-name").value = name;
    for (const tr of $("queues").tBodies[0].rows) {
      tr.classList.toggle("selected", tr.dataset.queue === name);
    }
    run(peek);
    run(loadSubscriptions);
  }

  function currentQueue() {
    const name = $("queue-name").value.trim();
    if (!name) throw new Error("name a queue first");
    return name;
  }

  // --- messages ---------------------------------------------------------------

  async function post() {
    const queue = currentQueue();
    let body;
    try {
      body = JSON.parse($("post-body").value);
    } catch (error) {
      throw new Error(`the body is not JSON: ${error.message}`);
    }
    const message = { body };
    const ttl = $("post-ttl").value.trim();
    if (ttl) message.ttl = Number(ttl);
    const result = await call("message_post", { queue_name: queue, messages: [message] });
    log(`posted ${result.message_ids.join(", ")} to ${queue}`);
    await refreshQueues();
  }

  async function peek() {
    const queue = currentQueue();
    const result = await call("message_list", {
      queue_name: queue, echo: true, include_claimed: true, include_delayed: true, limit: PAGE,
    });
    const rows = (result.messages || []).map((m) => {
      const tr = document.createElement("tr");
      tr.dataset.message = m.id;
      if (m.claim_id) tr.className = "claimed";
      tr.append(
        cell(m.id, "id"),
        cell(formatAge(m.age), "num"),
        cell(String(m.ttl), "num"),
        cell(m.claim_id ? "claimed" : "", "num"),
        cell(JSON.stringify(m.body), "body"),
      );
      tr.lastChild.title = JSON.stringify(m.body, null, 2);
      return tr;
    });
    $("messages").tBodies[0].replaceChildren(...rows);
  }

  async function purge() {
    const queue = currentQueue();
    if (!window.confirm(`Delete every message of ${queue}? Its subscriptions stay.`)) return;
    await call("queue_purge", { queue_name: queue, resource_types: ["messages"] });
    log(`purged ${queue}`);
    await refreshQueues();
    await peek();
  }

  // --- subscriptions and deliveries ----------------------------------------

  async function deliveries(queue, id, status) {
    const query = `status=${status}&limit=${PAGE}`;
    const path = `${queuePath(queue)}/subscriptions/${encodeURIComponent(id)}/deliveries?${query}`;
    return (await http("GET", path)).deliveries || [];
  }

  const countText = (list) => (list.length >= PAGE ? `${PAGE}+` : String(list.length));

  async function loadSubscriptions() {
    const queue = currentQueue();
    const result = await call("subscription_list", { queue_name: queue, limit: PAGE });
    const rows = [];
    for (const sub of result.subscriptions || []) {
      const [pending, dead] = await Promise.all([
        deliveries(queue, sub.id, "pending"), deliveries(queue, sub.id, "dead")]);
      const failing = pending.filter((d) => d.attempts > 0);
      const latest = [...dead, ...failing].filter((d) => d.last_error).pop();
      const tr = document.createElement("tr");
      tr.dataset.subscription = sub.id;
      tr.append(
        cell(sub.subscriber),
        cell(sub.confirmed ? "yes" : "no"),
        cell(`${countText(pending)} (${failing.length} failing)`, "num"),
        cell(countText(dead), "num dead"),
        cell(latest ? latest.last_error : "", "error"),
      );
      rows.push(tr);
      for (const d of [...dead, ...failing].slice(0, SHOWN_DELIVERIES)) {
        const detail = document.createElement("tr");
        detail.className = "delivery";
        detail.append(
          cell(`↳ ${d.status} ${d.kind}`),
          cell(d.created),
          cell(`${d.attempts} attempts`, "num"),
          cell(JSON.stringify(d.payload && d.payload.body), "body"),
          cell(d.last_error || "", "error"),
        );
        rows.push(detail);
      }
    }
    $("subscriptions").tBodies[0].replaceChildren(...rows);
  }

  // --- redrive ----------------------------------------------------------------

  async function redrive() {
    const queue = currentQueue();
    // Without a target the server sends them back to the queue that names
    // this one as its dead letter queue.
    const request = {};
    const to = $("redrive-to").value.trim();
    if (to) request.to = to;
    const limit = $("redrive-limit").value.trim();
    if (limit) request.limit = Number(limit);
    const result = await http("POST", `${queuePath(queue)}/redrive`, request);
    log(`redrove ${result.moved} messages from ${queue} to ${result.to}`);
    await refreshQueues();
    await peek();
  }

  // --- wiring -----------------------------------------------------------------

  async function run(action) {
    try {
      await action();
    } catch (error) {
      log(error.message, true);
    }
  }

  function onSubmit(id, action) {
    $(id).addEventListener("submit", (event) => {
      event.preventDefault();
      run(action);
    });
  }

  function onClick(id, action) {
    $(id).addEventListener("click", () => run(action));
  }

  onSubmit("connect-form", connect);
  onSubmit("post-form", post);
  onSubmit("redrive-form", redrive);
  onClick("peek", peek);
  onClick("purge", purge);
  onClick("load-subscriptions", loadSubscriptions);

  const saved = window.localStorage.getItem("tidings.project");
  if (saved) {
    $("project").value = saved;
    run(connect);
  }
})();
