// The waiting-room display (/queue/display): fetch the page again every few seconds and
// swap in its #now-serving. A failed fetch (the server restarting, the network down, the
// session over) keeps the last board on screen with a note, and the next tick tries again.
(function () {
  "use strict";
  const board = document.getElementById("now-serving");
  const note = document.getElementById("board-offline");
  if (!board || !note) return;
  const every = (Number(board.dataset.every) || 10) * 1000;

  function stale(why) {
    note.textContent = why === "signed-out" ? note.dataset.signedOut : note.dataset.lost;
    note.hidden = false;
    document.body.classList.add("is-stale");
  }

  async function refresh() {
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        redirect: "manual", // signed out: the sign-in page is not a board
        cache: "no-store",
        headers: { Accept: "text/html" },
      });
      if (response.type === "opaqueredirect" || response.status === 401) {
        stale("signed-out");
        return;
      }
      if (!response.ok) throw new Error(String(response.status));
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = page.getElementById("now-serving");
      if (!fresh) throw new Error("no board in the answer");
      board.replaceChildren(...Array.from(fresh.childNodes));
      note.hidden = true;
      document.body.classList.remove("is-stale");
    } catch (error) {
      stale("lost");
    } finally {
      window.setTimeout(refresh, every);
    }
  }

  window.setTimeout(refresh, every);
})();
