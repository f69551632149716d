// Say what a marked token means where people can read it: the token's title is copied into
// the status line below the text when the token is pointed at or reached with the keyboard
// (a title alone is invisible to keyboard and touch users). Text only, never HTML.
// One tab stop for the whole text (roving tabindex): a long text would otherwise be hundreds
// of Tab presses to get past; the arrow keys, Home and End move between tokens.
"use strict";
(function () {
  function show(token) {
    const out = document.getElementById("token-explain");
    if (!out) return;
    out.textContent = token.getAttribute("title");
    for (const other of document.querySelectorAll(".tokens .tok-current")) {
      other.classList.remove("tok-current");
    }
    token.classList.add("tok-current");
  }
  const tokenOf = (event) => event.target.closest && event.target.closest(".tokens [data-token]");
  document.addEventListener("DOMContentLoaded", () => {
    const box = document.querySelector(".tokens");
    if (!box) return;
    const tokens = Array.from(box.querySelectorAll("[data-token]"));
    box.addEventListener("focusin", (event) => {
      const token = tokenOf(event);
      if (!token) return;
      for (const t of tokens) t.tabIndex = t === token ? 0 : -1;
      show(token);
    });
    box.addEventListener("mouseover", (event) => {
      const token = tokenOf(event);
      if (token) show(token);
    });
    box.addEventListener("keydown", (event) => {
      const at = tokens.indexOf(tokenOf(event));
      if (at < 0) return;
      const to = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1,
        Home: 0, End: tokens.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      tokens[Math.max(0, Math.min(tokens.length - 1, to))].focus();
    });
  });
})();
