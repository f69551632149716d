// Say what a marked token means where people can read it: the token's title is copied into
// the status line below the text when the token is pointed at or reached with the keyboard
// (a title alone is invisible to keyboard and touch users). Text only, never HTML.
"use strict";
(function () {
  function show(event) {
    const token = event.target.closest && event.target.closest(".tokens [data-token]");
    const out = document.getElementById("token-explain");
    if (!token || !out) return;
    out.textContent = token.getAttribute("title");
    for (const other of document.querySelectorAll(".tokens .tok-current")) {
      other.classList.remove("tok-current");
    }
    token.classList.add("tok-current");
  }
  document.addEventListener("DOMContentLoaded", () => {
    const box = document.querySelector(".tokens");
    if (!box) return;
    box.addEventListener("focusin", show);
    box.addEventListener("mouseover", show);
  });
})();
