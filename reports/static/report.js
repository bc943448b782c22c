// splitbrain reports: pagination, sortable columns, a shared time cursor, copy buttons.
// Plain DOM, no libraries, nothing loaded from anywhere.
(function () {
  "use strict";

  // Paginated tables: rows beyond the first page carry the `hidden` attribute in the HTML.
  function setupPager(table) {
    var size = parseInt(table.getAttribute("data-page-size"), 10) || 50;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    if (rows.length <= size) return;
    var pages = Math.ceil(rows.length / size), page = 0;
    var bar = document.createElement("div");
    bar.className = "pager";
    var prev = document.createElement("button"), next = document.createElement("button");
    var label = document.createElement("span");
    prev.textContent = "‹ previous"; next.textContent = "next ›";
    bar.appendChild(prev); bar.appendChild(label); bar.appendChild(next);
    table.parentNode.insertBefore(bar, table.nextSibling);
    function show() {
      for (var i = 0; i < rows.length; i++) {
        rows[i].hidden = Math.floor(i / size) !== page;
      }
      label.textContent = "page " + (page + 1) + " of " + pages + " (" + rows.length + " rows)";
      prev.disabled = page === 0; next.disabled = page === pages - 1;
    }
    prev.addEventListener("click", function () { if (page > 0) { page--; show(); } });
    next.addEventListener("click", function () { if (page < pages - 1) { page++; show(); } });
    table.splitbrainPager = { rows: function (r) { rows = r; show(); }, reset: function () { page = 0; } };
    show();
  }

  // Sortable tables: click a header; cells may carry data-v (the value to sort by).
  function cellValue(row, col, numeric) {
    var cell = row.cells[col];
    var v = cell ? (cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent) : "";
    if (numeric) { var n = parseFloat(v); return isNaN(n) ? -Infinity : n; }
    return v.toLowerCase();
  }
  function setupSort(table) {
    var heads = table.tHead ? table.tHead.rows[0].cells : [];
    Array.prototype.forEach.call(heads, function (th, col) {
      if (!th.classList.contains("sortable")) return;
      th.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "num";
        var asc = !th.classList.contains("sorted-asc");
        Array.prototype.forEach.call(heads, function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(asc ? "sorted-asc" : "sorted-desc");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = cellValue(a, col, numeric), y = cellValue(b, col, numeric);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
        if (table.splitbrainPager) { table.splitbrainPager.reset(); table.splitbrainPager.rows(rows); }
      });
    });
  }

  // One cursor across all time plots: they share their horizontal mapping (data-* attributes).
  var SVGNS = "http://www.w3.org/2000/svg";
  function setupCursor(plots) {
    var marks = plots.map(function (svg) {
      var line = document.createElementNS(SVGNS, "line");
      line.setAttribute("class", "cursor");
      line.setAttribute("y1", "0"); line.setAttribute("y2", svg.viewBox.baseVal.height - 22);
      line.style.display = "none";
      var text = document.createElementNS(SVGNS, "text");
      text.setAttribute("class", "cursor-label"); text.setAttribute("y", "9");
      text.style.display = "none";
      svg.appendChild(line); svg.appendChild(text);
      return { svg: svg, line: line, text: text };
    });
    function place(t) {
      marks.forEach(function (m) {
        var d = m.svg.dataset, t0 = parseFloat(d.t0), t1 = parseFloat(d.t1);
        var show = t !== null && t >= t0 && t <= t1;
        m.line.style.display = m.text.style.display = show ? "" : "none";
        if (!show) return;
        var x = parseFloat(d.left) + (t - t0) / (t1 - t0) * parseFloat(d.plotw);
        m.line.setAttribute("x1", x); m.line.setAttribute("x2", x);
        m.text.setAttribute("x", x + 4); m.text.textContent = t.toFixed(2) + " s";
      });
    }
    marks.forEach(function (m) {
      m.svg.addEventListener("mousemove", function (ev) {
        var d = m.svg.dataset, rect = m.svg.getBoundingClientRect();
        var x = (ev.clientX - rect.left) * parseFloat(d.width) / rect.width;
        var t = parseFloat(d.t0) + (x - parseFloat(d.left)) / parseFloat(d.plotw) * (parseFloat(d.t1) - parseFloat(d.t0));
        place(t);
      });
      m.svg.addEventListener("mouseleave", function () { place(null); });
    });
  }

  function setupCopy(button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      var text = target ? target.textContent : "";
      function done(ok) { button.textContent = ok ? "copied" : "select and copy"; }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { done(true); }, function () { done(false); });
      } else {
        var range = document.createRange(); range.selectNodeContents(target);
        var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        done(ok);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table[data-page-size]"), setupPager);
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable-table"), setupSort);
    setupCursor(Array.prototype.slice.call(document.querySelectorAll("svg.timeplot")));
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), setupCopy);
    document.documentElement.setAttribute("data-ready", "1");
  });
})();
