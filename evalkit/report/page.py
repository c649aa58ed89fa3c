"""What every evalkit HTML page shares: the sorting script and the Content-Security-Policy.

The pages are static files opened from disk. The one inline script makes tables with class
"sortable" sort by a click on a header (numbers as numbers, "n/a" last). The CSP meta allows
scripts only by the SHA-256 of that exact text, and nothing may load from anywhere: markup
injected through model text (already escaped) could still not run or fetch anything.
"""
from __future__ import annotations

import base64
import hashlib

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead ? table.tHead.rows[table.tHead.rows.length - 1].cells : [];
  Array.prototype.forEach.call(heads, function (th, col) {
    th.tabIndex = 0; th.title = "sort by this column"; th.classList.add("sorts");
    function key(row) {
      var c = row.cells[col]; if (!c) return null;
      var v = c.hasAttribute("data-sort") ? c.getAttribute("data-sort") : c.textContent.trim();
      if (v === "" || v === "n/a") return null;
      var n = parseFloat(v.replace(/^\\+/, ""));
      return isNaN(n) ? v.toLowerCase() : n;
    }
    function sort() {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
        var d = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
        return asc ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    }
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") sort(); });
  });
});
"""


def script_hash(script: str = SORT_SCRIPT) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def csp(script: str = SORT_SCRIPT) -> str:
    """The policy: that one script by hash, inline styles, data: images; nothing else."""
    return (f"default-src 'none'; script-src '{script_hash(script)}'; style-src 'unsafe-inline'; "
            "img-src data:; base-uri 'none'; form-action 'none'")


# the header arrows (shared stylesheet lines)
SORT_CSS = ("th.sorts{cursor:pointer}th.sorts:after{content:' \\2195';color:#999;font-size:80%}"
            "th[aria-sort=ascending]:after{content:' \\2191';color:#000}"
            "th[aria-sort=descending]:after{content:' \\2193';color:#000}")
