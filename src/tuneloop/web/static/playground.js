// tuneloop playground: streams replies into the page (fetch + ReadableStream over server-sent events), rates them
// without leaving it, and stops a reply (the aborted fetch makes the server stop generating). Without this script
// the form posts normally and the page comes back with the whole reply. Text is only ever set as textContent.
"use strict";

(() => {
  const form = document.getElementById("playground");
  if (!form) return;
  const token = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const prefix = form.getAttribute("action").replace(/\/playground$/, "");
  const sendButton = document.getElementById("pg-send");
  const stopButton = document.getElementById("pg-stop");
  const status = document.getElementById("pg-status");
  const message = document.getElementById("pg-message");
  const selects = [document.getElementById("pg-model"), document.getElementById("pg-compare")];
  const threads = [form.elements.thread_a, form.elements.thread_b];
  const columns = [document.getElementById("pg-side-0"), document.getElementById("pg-side-1")];
  let controller = null;

  const make = (tag, attributes = {}, text = null) => {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    if (text !== null) element.textContent = text;
    return element;
  };

  // A new model in a column starts a new conversation there (a thread has one model).
  const showColumn = (index) => {
    const model = selects[index].value;
    columns[index].hidden = !model;
    columns[index].querySelector(".pg-model").textContent = model;
  };
  selects.forEach((select, index) => select.addEventListener("change", () => {
    threads[index].value = "";
    columns[index].querySelector(".pg-turns").replaceChildren();
    for (const old of columns[index].querySelectorAll(".error")) old.remove();
    showColumn(index);
  }));

  const userTurn = (text) => {
    const item = make("li", { class: "turn user" });
    const article = make("article", { "aria-label": "You said" });
    article.append(make("div", { class: "content" }, text));
    item.append(article);
    return item;
  };

  const replyTurn = (model) => {
    const item = make("li", { class: "turn assistant" });
    const article = make("article", { "aria-label": `Reply of ${model}`, "aria-busy": "true" });
    const header = make("header");
    header.append(make("strong", {}, model));
    const content = make("div", { class: "content" }, "");
    article.append(header, content);
    item.append(article);
    return { item, article, header, content };
  };

  const rateForm = (id) => {
    const rate = make("form", { method: "post", action: `${prefix}/messages/${id}/rate`, class: "inline pg-rate" });
    rate.append(make("input", { type: "hidden", name: "csrf_token", value: token() }));
    for (const [value, label, mark] of [["up", "up", "▲"], ["down", "down", "▼"]]) {
      rate.append(make("button", { type: "submit", name: "rating", value, "aria-pressed": "false",
                                   "aria-label": `Rate reply #${id} ${label}` }, mark));
    }
    return rate;
  };

  const finish = (turn, event) => {
    const id = String(event.message_id);
    turn.item.id = `pg-m${id}`;
    turn.article.setAttribute("aria-label", `Reply #${id}`);
    turn.article.removeAttribute("aria-busy");
    turn.header.append(" ", make("span", { class: "muted" }, `#${id}`));
    if (event.finish_reason && event.finish_reason !== "stop") {
      turn.header.append(" ", make("span", { class: "badge" }, event.finish_reason));
    }
    const controls = make("div", { class: "controls" });
    const link = make("a", { href: `${prefix}/log/${encodeURIComponent(event.thread_id)}#m${id}`,
                             "aria-label": `Reply #${id} in the log` }, "In the log");
    controls.append(rateForm(id), link);
    turn.article.append(controls);
  };

  const fail = (index, text) => {
    const line = make("p", { class: "error", role: "alert" }, text);
    (index === undefined ? form : columns[index]).append(line);
  };

  const handle = (event, turns) => {
    if (event.type === "piece") turns[event.side].content.textContent += event.text;
    else if (event.type === "done") {
      threads[event.side].value = event.thread_id;
      finish(turns[event.side], event);
    } else if (event.type === "error") {
      if (event.side === undefined) fail(undefined, event.message);
      else {
        turns[event.side].item.remove();
        fail(event.side, `${selects[event.side].value}: ${event.message}`);
      }
    }
  };

  const busy = (on) => {
    sendButton.disabled = on;
    stopButton.disabled = !on;
    status.textContent = on ? "Generating…" : "";
  };

  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const text = message.value;
    if (!text.trim() || controller) return;
    for (const old of document.querySelectorAll(".pg-form .error, .pg-side .error")) old.remove();
    const body = new URLSearchParams(new FormData(form));
    const turns = [];
    selects.forEach((select, index) => {
      if (!select.value) return;
      showColumn(index);
      const list = columns[index].querySelector(".pg-turns");
      list.append(userTurn(text));
      turns[index] = replyTurn(select.value);
      list.append(turns[index].item);
    });
    message.value = "";
    controller = new AbortController();
    busy(true);
    let stopped = false;
    try {
      const response = await fetch(form.dataset.send, {
        method: "POST", body, signal: controller.signal, credentials: "same-origin",
        headers: { "X-CSRF-Token": token(), Accept: "text/event-stream" },
      });
      const type = response.headers.get("content-type") || "";
      if (!type.startsWith("text/event-stream")) throw new Error(`the server answered ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const chunk = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of chunk.split("\n")) {
            if (line.startsWith("data: ")) handle(JSON.parse(line.slice(6)), turns);
          }
        }
      }
    } catch (error) {
      if (error.name === "AbortError") stopped = true;
      else fail(undefined, `The reply could not be shown: ${error.message}`);
    } finally {
      for (const turn of turns) turn?.article.removeAttribute("aria-busy");
      controller = null;
      busy(false);
      if (stopped) {
        status.textContent = "Stopped. What was said so far is logged; reload the page to rate it.";
      }
      message.focus();
    }
  });

  stopButton.addEventListener("click", () => controller?.abort());

  // Ctrl+Enter sends.
  message.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
  });

  // Ratings without leaving the page.
  document.addEventListener("submit", async (submitted) => {
    const rate = submitted.target;
    if (!rate.matches("form.pg-rate")) return;
    submitted.preventDefault();
    const button = submitted.submitter;
    if (!button) return;
    const pressed = button.getAttribute("aria-pressed") === "true";
    const body = new URLSearchParams({ rating: pressed ? "none" : button.value });
    try {
      const response = await fetch(rate.action, {
        method: "POST", body, redirect: "manual", credentials: "same-origin",
        headers: { "X-CSRF-Token": token() },
      });
      if (response.type !== "opaqueredirect" && !response.ok) throw new Error(`the server answered ${response.status}`);
      for (const other of rate.querySelectorAll("button")) other.setAttribute("aria-pressed", "false");
      button.setAttribute("aria-pressed", pressed ? "false" : "true");
      status.textContent = pressed ? "Rating cleared." : `Rated ${button.value}.`;
    } catch (error) {
      status.textContent = `The rating was not saved: ${error.message}`;
    }
  });
})();
