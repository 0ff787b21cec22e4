/* Hitmap loader, the /w.js that snippets name. Pasted snippets never change, so this
   URL is cached for an hour only; it loads this release's widget from /w/VERSION.js,
   whose bytes never change (cached a year), passing on the data- options. */
(function () {
  "use strict";
  try {
    var s = document.currentScript;
    if (!s) return;
    var w = document.createElement("script");
    w.async = true;
    w.src = new URL(s.src).origin + "/w/__VERSION__.js";
    for (var i = 0; i < s.attributes.length; i++) {
      var a = s.attributes[i];
      if (a.name.indexOf("data-") === 0) w.setAttribute(a.name, a.value);
    }
    s.parentNode.insertBefore(w, s.nextSibling);
  } catch (e) {
    /* never break the page */
  }
})();
