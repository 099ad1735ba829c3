// The day list's Print button (the page is also printable with the browser's own menu).
(function () {
  "use strict";
  const button = document.getElementById("print-page");
  if (button) button.addEventListener("click", function () { window.print(); });
})();
