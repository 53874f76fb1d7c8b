// tuneloop dashboard: a job's page, live. Server-sent events bring new events, status changes and the chart's new
// geometry; text is only ever set as textContent and the chart is built with createElementNS and setAttribute.
"use strict";

(() => {
  const live = document.querySelector("[data-job-stream]");
  if (!live || !window.EventSource) return;
  const SVG = "http://www.w3.org/2000/svg";
  const byId = (id) => document.getElementById(id);
  const source = new EventSource(live.dataset.jobStream);
  let finished = false;

  const points = (pairs) => pairs.map(([x, y]) => `${x},${y}`).join(" ");

  source.addEventListener("job-event", (message) => {
    const event = JSON.parse(message.data);
    const item = document.createElement("li");
    const time = document.createElement("time");
    time.textContent = event.at;
    const text = document.createElement("span");
    text.className = `level-${event.level}`;
    text.textContent = event.message;
    item.append(time, " ", text);
    byId("job-events").prepend(item);
  });

  source.addEventListener("status", (message) => {
    const status = JSON.parse(message.data);
    const label = byId("job-status");
    label.textContent = status.status;
    label.className = `status st-${status.status}`;
    byId("job-step").textContent = status.total_steps ? `step ${status.step} of ${status.total_steps}` : "";
    byId("job-model").textContent = status.fine_tuned_model || "";
    const error = byId("job-error");
    error.textContent = status.error || "";
    error.hidden = !status.error;
  });

  source.addEventListener("chart", (message) => {
    const chart = JSON.parse(message.data);
    for (const name of ["train", "valid", "score"]) byId(`chart-${name}`).setAttribute("points", points(chart[name]));
    byId("chart-ymax").textContent = chart.y_max;
    byId("chart-ymid").textContent = chart.y_mid;
    byId("chart-xmax").textContent = chart.x_max;
    byId("chart-summary").textContent = chart.summary;
    const axis = byId("chart-score-axis");
    if (chart.has_score) axis.removeAttribute("visibility"); else axis.setAttribute("visibility", "hidden");
    const dots = byId("chart-dots");
    dots.replaceChildren();
    for (const name of ["valid", "score"]) {
      for (const [x, y] of chart[name]) {
        const dot = document.createElementNS(SVG, "circle");
        dot.setAttribute("class", `${name}-dot`);
        dot.setAttribute("cx", x);
        dot.setAttribute("cy", y);
        dot.setAttribute("r", "3");
        dots.append(dot);
      }
    }
  });

  // The job is over: the page again, with its checkpoints and result files (and no stream).
  source.addEventListener("end", () => {
    finished = true;
    source.close();
    window.location.reload();
  });

  window.addEventListener("pagehide", () => { if (!finished) source.close(); });
})();
