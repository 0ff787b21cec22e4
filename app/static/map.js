// The public map's range selector: swap the image in place (links still work without JS).
(function () {
  "use strict";
  var nav = document.getElementById("map-ranges");
  var img = document.getElementById("world-map");
  if (!nav || !img) return;
  var label = document.getElementById("world-range");
  var visits = document.getElementById("world-visits");
  var updated = document.getElementById("world-updated");
  var download1 = document.getElementById("download-1x");
  var download2 = document.getElementById("download-2x");
  var key = img.getAttribute("data-key") || "map";
  nav.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-range]") : null;
    if (!link || event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    var range = link.getAttribute("data-range");
    var src = link.getAttribute("data-image");
    var src2 = link.getAttribute("data-image-2x");
    img.setAttribute("srcset", src + " 1x, " + src2 + " 2x");
    img.setAttribute("src", src);
    img.setAttribute("alt", img.getAttribute("data-alt-prefix") + " " + link.textContent.trim().toLowerCase());
    var links = nav.querySelectorAll("a[data-range]");
    for (var i = 0; i < links.length; i++) links[i].removeAttribute("aria-current");
    link.setAttribute("aria-current", "page");
    if (label) label.textContent = link.textContent.trim();
    if (visits) visits.textContent = link.getAttribute("data-visits");
    if (updated) updated.textContent = link.getAttribute("data-updated") || "just now";
    if (download1) { download1.href = src; download1.setAttribute("download", key + "-" + range + ".png"); }
    if (download2) { download2.href = src2; download2.setAttribute("download", key + "-" + range + "@2x.png"); }
    if (window.history && window.history.replaceState) window.history.replaceState(null, "", link.href);
  });
})();
