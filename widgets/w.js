/* Hitmap widget: keeps the counter image honest and invisible when Hitmap is down.
   Loaded with <script async>, so it never delays the page; it never throws. */
(function () {
  "use strict";
  try {
    var script = document.currentScript;
    if (!script) return;
    var key = script.getAttribute("data-site");
    if (!key || !/^[A-Za-z0-9_-]{22}$/.test(key)) return;
    var base = new URL(script.src).origin;
    var src = base + "/c/" + key + ".png";

    function fallback(img) {
      // Hitmap did not answer: hide the image (and its link) rather than show a broken icon.
      var box = img.parentNode && img.parentNode.tagName === "A" ? img.parentNode : img;
      box.style.display = "none";
      box.setAttribute("data-hitmap", "unavailable");
    }

    function watch(img) {
      if (img.complete && img.naturalWidth === 0) fallback(img);
      else img.addEventListener("error", function () { fallback(img); }, { once: true });
    }

    var found = false;
    var imgs = document.images;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].src.indexOf("/c/" + key + ".png") !== -1) { watch(imgs[i]); found = true; }
    }
    if (!found) {
      // Script-only embed: add the counter right after the script tag.
      var a = document.createElement("a");
      a.href = base + "/map/" + key;
      var img = document.createElement("img");
      img.alt = "Visitor map";
      img.src = src;
      a.appendChild(img);
      script.parentNode.insertBefore(a, script.nextSibling);
      watch(img);
    }
  } catch (e) { /* never break the host page */ }
})();
