// tuneloop dashboard: a task's page, live. Server-sent events bring new events and status changes; text is only
// ever set as textContent.
"use strict";

(() => {
  const live = document.querySelector("[data-task-stream]");
  if (!live || !window.EventSource) return;
  const byId = (id) => document.getElementById(id);
  const source = new EventSource(live.dataset.taskStream);
  let finished = false;

  source.addEventListener("task-event", (message) => {
    const event = JSON.parse(message.data);
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = event.at;
    const text = document.createElement("span");
    text.className = `level-${event.level}`;
    text.textContent = event.message;
    item.append(time, " ", text);
    byId("task-events").prepend(item);
  });

  source.addEventListener("status", (message) => {
    const status = JSON.parse(message.data);
    const label = byId("task-status");
    label.textContent = status.status;
    label.className = `status st-${status.status}`;
    const bar = byId("task-progress");
    bar.hidden = !status.total;
    if (status.total) {
      bar.max = status.total;
      bar.value = status.done || 0;
    }
    byId("task-message").textContent = status.message || "";
    const error = byId("task-error");
    error.textContent = status.error || "";
    error.hidden = !status.error;
  });

  // The task is over: the page again, with its result and links (and no stream).
  source.addEventListener("end", () => {
    finished = true;
    source.close();
    window.location.reload();
  });

  window.addEventListener("pagehide", () => { if (!finished) source.close(); });
})();
