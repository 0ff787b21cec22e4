/* Hitmap live overlay: draws the site's click heatmap over the page it runs on.

   Loaded by the bookmarklet or by w.js (from a #hitmap-overlay=TOKEN link made on the
   heatmap page), with data-site and data-token on its script tag. Running it again
   closes the overlay.

   Each click is placed on the element its CSS selector names, at the stored offset
   inside that element's box, so the heatmap lines up at any window width, on liquid
   and centred layouts alike. Clicks whose element no longer exists (or is hidden at
   this width) are drawn at their recorded page position as dashed rings and counted
   separately. While the overlay is open, w.js records no clicks. */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var doc = document, root = doc.documentElement;
  var existing = doc.getElementById("hitmap-overlay");
  if (existing && existing.hitmapClose) { existing.hitmapClose(); return; }

  var key = script.getAttribute("data-site") || "";
  var token = script.getAttribute("data-token") || "";
  var base = new URL(script.src).origin;
  var RADIUS = 24;
  var clicks = [], buckets = [], points = [], bucket = -1, frame = 0, timer = 0;

  var box = doc.createElement("div");
  box.id = "hitmap-overlay";
  box.style.cssText = "all:initial;position:fixed;left:0;top:0;right:0;bottom:0;" +
    "z-index:2147483647;pointer-events:none;";
  var canvas = doc.createElement("canvas");
  canvas.id = "hitmap-overlay-canvas";
  canvas.style.cssText = "position:absolute;left:0;top:0;width:100%;height:100%;" +
    "pointer-events:none;";
  var panel = doc.createElement("div");
  panel.style.cssText = "position:absolute;top:10px;right:10px;pointer-events:auto;" +
    "background:#0f1c2b;color:#fff;font:13px/1.45 system-ui,sans-serif;padding:8px 12px;" +
    "border-radius:8px;box-shadow:0 4px 16px rgba(0,0,0,.3);max-width:280px;";
  var status = doc.createElement("div");
  status.setAttribute("role", "status");
  status.textContent = "Hitmap: loading clicks…";
  var select = doc.createElement("select");
  select.setAttribute("aria-label", "Window widths");
  select.style.cssText = "display:none;margin:6px 0 0;font:inherit;max-width:100%;";
  var close = doc.createElement("button");
  close.type = "button";
  close.textContent = "Close";
  close.style.cssText = "margin:6px 0 0 8px;font:inherit;cursor:pointer;";
  panel.appendChild(status);
  panel.appendChild(select);
  panel.appendChild(close);
  box.appendChild(canvas);
  box.appendChild(panel);
  (doc.body || root).appendChild(box);
  root.setAttribute("data-hitmap-overlay", "");

  // One click's blob, drawn many times with low alpha: overlaps add up.
  var stamp = doc.createElement("canvas");
  stamp.width = stamp.height = RADIUS * 2;
  var sctx = stamp.getContext("2d");
  var grad = sctx.createRadialGradient(RADIUS, RADIUS, 0, RADIUS, RADIUS, RADIUS);
  grad.addColorStop(0, "rgba(0,0,0,1)");
  grad.addColorStop(1, "rgba(0,0,0,0)");
  sctx.fillStyle = grad;
  sctx.fillRect(0, 0, RADIUS * 2, RADIUS * 2);

  // Accumulated alpha → blue, green, yellow, red; more opaque where hotter.
  var palette = new Uint8ClampedArray(256 * 4);
  var stops = [[0, 0, 0, 255], [0.25, 0, 255, 255], [0.5, 0, 255, 0], [0.75, 255, 255, 0],
    [1, 255, 0, 0]];
  for (var i = 1; i < 256; i++) {
    var t = i / 255, s = 1;
    while (stops[s][0] < t) s++;
    var a = stops[s - 1], b = stops[s], f = (t - a[0]) / (b[0] - a[0]);
    for (var c = 0; c < 3; c++) palette[i * 4 + c] = a[c + 1] + (b[c + 1] - a[c + 1]) * f;
    palette[i * 4 + 3] = Math.min(255, 70 + t * 200);
  }

  function done() {
    cancelAnimationFrame(frame);
    clearInterval(timer);
    removeEventListener("scroll", schedule, true);
    removeEventListener("resize", replace);
    if (box.parentNode) box.parentNode.removeChild(box);
    root.removeAttribute("data-hitmap-overlay");
  }
  box.hitmapClose = done;
  close.addEventListener("click", done);

  function schedule() {
    if (!frame) frame = requestAnimationFrame(draw);
  }

  function replace() {
    place();
    schedule();
  }

  // Document coordinates of every click: on its element when the selector finds a
  // visible one, else at its recorded page position ("loose").
  function place() {
    var found = {}, anchored = 0, loose = 0, sx = scrollX, sy = scrollY;
    points = [];
    for (var k = 0; k < clicks.length; k++) {
      var p = clicks[k];
      if (bucket >= 0 && p[6] !== bucket) continue;
      var r = null;
      if (p[0]) {
        if (!(p[0] in found)) {
          var el = null;
          try { el = doc.querySelector(p[0]); } catch (e) { el = null; }
          var rect = el && !box.contains(el) ? el.getBoundingClientRect() : null;
          found[p[0]] = rect && (rect.width || rect.height) ? rect : null;
        }
        r = found[p[0]];
      }
      if (r) {
        points.push([r.left + sx + p[1] * r.width, r.top + sy + p[2] * r.height, 1]);
        anchored++;
      } else {
        points.push([p[3], p[4], 0]);
        loose++;
      }
    }
    box.setAttribute("data-anchored", anchored);
    box.setAttribute("data-loose", loose);
    status.textContent = "Hitmap: " + (anchored + loose) + " clicks · " + anchored +
      " on their elements · " + loose + " at their recorded position (dashed: element not found)";
  }

  function draw() {
    frame = 0;
    var dpr = window.devicePixelRatio || 1, w = innerWidth, h = innerHeight;
    var W = Math.round(w * dpr), H = Math.round(h * dpr);
    if (canvas.width !== W || canvas.height !== H) { canvas.width = W; canvas.height = H; }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, W, H);
    var sx = scrollX, sy = scrollY, n = 0, k, p;
    for (k = 0; k < points.length; k++) if (points[k][2]) n++;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.globalAlpha = Math.max(0.08, Math.min(0.6, 3 / Math.sqrt(n || 1)));
    for (k = 0; k < points.length; k++) {
      p = points[k];
      var x = p[0] - sx, y = p[1] - sy;
      if (p[2] && x > -RADIUS && y > -RADIUS && x < w + RADIUS && y < h + RADIUS) {
        ctx.drawImage(stamp, x - RADIUS, y - RADIUS);
      }
    }
    ctx.globalAlpha = 1;
    if (W && H) {
      var image = ctx.getImageData(0, 0, W, H), d = image.data;
      for (k = 3; k < d.length; k += 4) {
        var v = d[k];
        if (v) {
          d[k - 3] = palette[v * 4];
          d[k - 2] = palette[v * 4 + 1];
          d[k - 1] = palette[v * 4 + 2];
          d[k] = palette[v * 4 + 3];
        }
      }
      ctx.putImageData(image, 0, 0);
    }
    ctx.setLineDash([3, 3]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "rgba(124,58,237,.95)";
    for (k = 0; k < points.length; k++) {
      p = points[k];
      if (p[2]) continue;
      ctx.beginPath();
      ctx.arc(p[0] - sx, p[1] - sy, 7, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.setLineDash([]);
  }

  function start(data) {
    clicks = data.clicks || [];
    buckets = data.buckets || [];
    var all = doc.createElement("option");
    all.value = "-1";
    all.textContent = "All window widths";
    select.appendChild(all);
    for (var k = 0; k < buckets.length; k++) {
      var o = doc.createElement("option");
      o.value = String(k);
      o.textContent = buckets[k].name + " (from " + buckets[k].min + " px)";
      select.appendChild(o);
    }
    select.style.display = "block";
    select.addEventListener("change", function () {
      bucket = parseInt(select.value, 10);
      replace();
    });
    addEventListener("scroll", schedule, true);
    addEventListener("resize", replace);
    timer = setInterval(replace, 2000); // late images and fonts move elements
    replace();
    box.setAttribute("data-total", clicks.length);
    box.setAttribute("data-state", "ready");
  }

  function fail(reason) {
    box.setAttribute("data-state", "failed");
    status.textContent = "Hitmap: cannot load the clicks of this page (" + reason + "). " +
      "Create a new bookmarklet on the heatmap page if it was revoked.";
  }

  var path = location.pathname + location.search + location.hash;
  fetch(base + "/o/" + encodeURIComponent(key) + "/clicks?path=" + encodeURIComponent(path), {
    headers: { Authorization: "Bearer " + token },
    mode: "cors",
    credentials: "omit",
    cache: "no-store"
  }).then(function (response) {
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }).then(start).catch(function (e) { fail(e && e.message ? e.message : "network error"); });
})();
