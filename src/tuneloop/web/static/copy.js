// tuneloop dashboard: Copy buttons. <button data-copy="ID"> copies the textContent of the element with that id (a
// <pre> of a serve recipe); <span data-copy-status="ID"> says whether it worked. Where the clipboard cannot be
// written (a page not served from localhost or HTTPS), the text is selected for the reader to copy.
"use strict";

(() => {
  const say = (id, text) => {
    const status = document.querySelector(`[data-copy-status="${CSS.escape(id)}"]`);
    if (status) status.textContent = text;
  };

  const select = (element) => {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  };

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const id = button.dataset.copy;
    const source = document.getElementById(id);
    if (!source) return;
    const text = source.textContent;
    const fallback = () => {
      select(source);
      say(id, "Could not copy: the text is selected, press Ctrl+C (⌘C) to copy it.");
    };
    if (!navigator.clipboard || !window.isSecureContext) {
      fallback();
      return;
    }
    navigator.clipboard.writeText(text).then(() => say(id, "Copied."), fallback);
  });
})();
