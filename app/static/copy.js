/* Copy buttons: <button data-copy="ID" hidden> copies the value of the field #ID.
   The buttons stay hidden without JavaScript; the fields are read-only and selectable.
   "Copied" is announced through the live region #copy-status. */
(function () {
  "use strict";

  var status = document.getElementById("copy-status");

  function announce(button, short, spoken) {
    if (status) {
      status.textContent = "";
      // Set after a tick so that screen readers repeat the same message on a second copy.
      window.setTimeout(function () { status.textContent = spoken; }, 50);
    }
    if (!button.hasAttribute("data-label")) button.setAttribute("data-label", button.textContent);
    button.textContent = short;
    window.clearTimeout(button._copyTimer);
    button._copyTimer = window.setTimeout(function () {
      button.textContent = button.getAttribute("data-label");
    }, 2000);
  }

  function selectField(field) {
    field.focus();
    field.select();
    if (field.setSelectionRange) field.setSelectionRange(0, field.value.length);
  }

  function legacyCopy(field) {
    selectField(field);
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  function copy(button) {
    var field = document.getElementById(button.getAttribute("data-copy"));
    if (!field) return;
    var text = field.value;
    function fallback() {
      if (legacyCopy(field)) {
        button.focus();
        announce(button, "Copied", "Copied");
      } else {
        selectField(field);
        announce(button, "Selected", "Snippet selected: press Ctrl+C (or Command+C) to copy");
      }
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () {
        announce(button, "Copied", "Copied");
      }, fallback);
    } else {
      fallback();
    }
  }

  var buttons = document.querySelectorAll("button[data-copy]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].hidden = false;
    buttons[i].addEventListener("click", function (event) { copy(event.currentTarget); });
  }
})();
