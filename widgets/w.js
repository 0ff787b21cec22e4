/* Hitmap widget: keeps the counter image honest and invisible when Hitmap is down,
   and records clicks for the site's heatmaps.
   Loaded with <script async>, so it never delays the page; it never throws.

   Options are data- attributes of the script tag (the heatmap page writes them):
     data-site="KEY"  the site (required)
     data-query="1"   keep the query string and fragment of page URLs (default: path only)
     data-dnt="1"     record no clicks when the browser sends Do Not Track or Global
                      Privacy Control (Hitmap also drops such batches itself)
     data-clicks="0"  record no clicks at all
   Per click it sends positions, sizes and a CSS selector of the clicked element built
   from tag names, ids and classes: never text, input values or anything typed.
   Batches go to /b/KEY as text/plain JSON with navigator.sendBeacon (fetch keepalive
   as the fallback), at 20 clicks, after 5 s, and when the page is hidden or left;
   at most 10 batches per page view (Hitmap also budgets clicks per address and site).
   A URL fragment #hitmap-overlay=TOKEN (from the heatmap page) loads the live overlay. */
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

  try { overlay(); } catch (e) { /* idem */ }
  try { clicks(); } catch (e) { /* idem */ }

  function overlay() {
    if (!base) return;
    var m = /^#hitmap-overlay=([\w-]{8,100})$/.exec(location.hash);
    if (!m) return;
    history.replaceState(history.state, "", location.pathname + location.search);
    var s = document.createElement("script");
    s.src = base + "/overlay.js";
    s.setAttribute("data-site", key);
    s.setAttribute("data-token", m[1]);
    document.head.appendChild(s);
  }

  function clicks() {
    if (!base) return;
    var nav = navigator, doc = document, root = doc.documentElement;
    function opt(name) { return script.getAttribute("data-" + name) === "1"; }
    if (script.getAttribute("data-clicks") === "0") return;
    if (opt("dnt") && (nav.doNotTrack === "1" || window.doNotTrack === "1" ||
        nav.globalPrivacyControl === true)) return;
    var url = base + "/b/" + key, queue = [], page = null, timer = 0, batches = 0;
    var NAME = /^[A-Za-z][\w-]{0,40}$/;

    function send() {
      clearTimeout(timer);
      timer = 0;
      if (!queue.length) return;
      batches++;
      var body = JSON.stringify({ p: page, c: queue });
      queue = [];
      try {
        if (nav.sendBeacon && nav.sendBeacon(url, new Blob([body], { type: "text/plain" }))) return;
      } catch (e) { /* fall back to fetch */ }
      try {
        fetch(url, { method: "POST", body: body, keepalive: true, mode: "no-cors",
          credentials: "omit" }).catch(function () {});
      } catch (e) { /* nothing more to try */ }
    }

    // A short selector: #id when there is a usable one, else tag.class when the class
    // tells it from its siblings, else tag:nth-of-type(n); at most 8 levels.
    function selector(el) {
      var parts = [];
      for (var depth = 0; el && el.nodeType === 1 && depth < 8; depth++, el = el.parentElement) {
        var tag = el.localName, id = el.id;
        if (id && NAME.test(id)) { parts.unshift("#" + id); break; }
        if (!NAME.test(tag)) return null;
        if (tag === "html" || tag === "body") { parts.unshift(tag); break; }
        if (!el.parentElement) return null; // inside a shadow root: no stable path
        var cls = (el.getAttribute("class") || "").trim().split(/\s+/)[0];
        if (!NAME.test(cls)) cls = "";
        var n = 0, index = 0, unique = !!cls;
        for (var k = el.parentElement.firstElementChild; k; k = k.nextElementSibling) {
          if (k.localName !== tag) continue;
          n++;
          if (k === el) index = n;
          else if (cls && k.classList.contains(cls)) unique = false;
        }
        parts.unshift(tag + (unique ? "." + cls : n > 1 ? ":nth-of-type(" + index + ")" : ""));
      }
      while (parts.join(">").length > 200) parts.shift();
      return parts.join(">") || null;
    }

    function fraction(offset, size) {
      return size > 0 ? Math.round(Math.min(1, Math.max(0, offset / size)) * 1e4) / 1e4 : 0.5;
    }

    function record(e) {
      var t = e.target;
      // Keyboard "clicks" have no position; the owner's own overlay is not a visit.
      if (batches >= 10 || !e.isTrusted || !e.detail || !t || t.nodeType !== 1 ||
          root.hasAttribute("data-hitmap-overlay")) return;
      var path = (location.pathname + (opt("query") ? location.search + location.hash : ""))
        .slice(0, 512);
      if (page !== null && path !== page) send();
      page = path;
      var body = doc.body || root, box = t.getBoundingClientRect(), s = selector(t);
      var click = {
        x: Math.max(0, Math.round(e.pageX)), y: Math.max(0, Math.round(e.pageY)),
        w: Math.min(Math.max(root.scrollWidth, body.scrollWidth, 1), 1e5),
        h: Math.min(Math.max(root.scrollHeight, body.scrollHeight, 1), 1e5),
        v: window.innerWidth || root.clientWidth || 1,
        r: Math.round((window.devicePixelRatio || 1) * 100) / 100
      };
      if (click.x > 1e5 || click.y > 1e5) return; // beyond what Hitmap accepts and draws
      if (s) {
        click.s = s;
        click.ox = fraction(e.clientX - box.left, box.width);
        click.oy = fraction(e.clientY - box.top, box.height);
      }
      queue.push(click);
      if (queue.length >= 20) send();
      else if (!timer) timer = setTimeout(send, 5000);
    }

    addEventListener("click", record, { capture: true, passive: true });
    addEventListener("pagehide", send);
    doc.addEventListener("visibilitychange", function () {
      if (doc.visibilityState === "hidden") send();
    });
  }
})();
