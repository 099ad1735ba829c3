// Patient search: Enter opens the patient when the search finds exactly one.
//
// The form names the element holding the live results (data-open-single). On Enter the
// results for what is in the box now are fetched (unless already shown); when they hold
// one patient, that patient's page opens. Without this script Enter shows the results.
(function () {
  "use strict";

  function onlyPatient(results, typed) {
    const list = results.querySelector(".patient-list");
    if (!list || (list.dataset.q || "").trim() !== typed) return null;
    const links = list.querySelectorAll("a.patient-link");
    return links.length === 1 ? links[0] : null;
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.openSingle) return;
    const results = document.getElementById(form.dataset.openSingle);
    const input = form.querySelector("input[name=q]");
    if (!results || !input) return;
    const typed = input.value.trim();
    const shown = onlyPatient(results, typed);
    if (shown) {
      event.preventDefault();
      window.location.assign(shown.href);
      return;
    }
    if (!window.htmx || !typed) return;
    event.preventDefault();
    const url = form.action.split("?")[0].replace(/\/?$/, "/results");
    window.htmx
      .ajax("GET", url + "?q=" + encodeURIComponent(input.value), { target: results })
      .then(function () {
        const found = onlyPatient(results, typed);
        if (found) window.location.assign(found.href);
      });
  });
})();
