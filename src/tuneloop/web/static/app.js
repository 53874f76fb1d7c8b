// tuneloop dashboard: the little script the pages use. Everything works without it except the live parts (a job's
// events, the playground's streamed replies), which it adds. Text from the server is only ever set as textContent.
"use strict";

const csrfToken = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

// Buttons that ask before a destructive action: <button data-confirm="Cancel the job?">.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-confirm]");
  if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
});

// Forms with data-busy say so while the server works (long work shows progress).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.matches("form[data-busy]")) return;
  const status = form.querySelector("[role=status]") || form.appendChild(document.createElement("p"));
  status.setAttribute("role", "status");
  status.textContent = form.dataset.busy;
  // After the submit (a disabled submitter would drop its name and value from the form).
  setTimeout(() => { for (const button of form.querySelectorAll("button")) button.disabled = true; }, 0);
});

window.tuneloop = { csrfToken };
