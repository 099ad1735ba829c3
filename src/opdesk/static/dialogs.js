// Dialogs the desk pages load with htmx into #dialog (booking, "are you sure?"): shown
// as real modals. Focus moves into the dialog, Esc closes it, and focus goes back to the
// button that opened it. Without JavaScript the same links open a page of their own.
(function () {
  "use strict";
  let opener = null;

  function holder(node) {
    return node && node.closest ? node.closest("#dialog") : null;
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    const target = event.detail.target;
    // A form inside the dialog sending again keeps the button that first opened it.
    if (target && target.id === "dialog" && !holder(event.detail.elt)) {
      opener = event.detail.elt;
    }
  });

  // A dialog drawn again (a mistake in the form) replaces the old one whole: htmx would
  // otherwise copy attributes across elements of the same id, which the CSP refuses.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const target = event.detail.target;
    if (target && target.id === "dialog" && event.detail.shouldSwap) target.replaceChildren();
  });

  // Shown only once settled: htmx wires up the new content's own hx- attributes (the
  // patient search) at settle time, so a dialog shown at swap time could take typing
  // that nothing listens to yet.
  document.addEventListener("htmx:afterSettle", function (event) {
    const target = event.target;
    if (!(target instanceof Element) || target.id !== "dialog") return;
    const dialog = target.querySelector("dialog");
    if (!dialog) return;
    if (!dialog.open) dialog.showModal();
    // A field the server marked wrong first, else what the dialog asks to focus.
    const first =
      dialog.querySelector("[aria-invalid='true'], .warning-box input") ||
      dialog.querySelector("[autofocus]");
    if (first) first.focus();
  });

  // "close" does not bubble; listen while it travels down.
  document.addEventListener(
    "close",
    function (event) {
      const dialog = event.target;
      if (!(dialog instanceof HTMLDialogElement) || !holder(dialog)) return;
      holder(dialog).replaceChildren();
      if (opener && opener.isConnected) opener.focus();
      opener = null;
    },
    true,
  );
})();
