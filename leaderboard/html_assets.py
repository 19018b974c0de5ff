"""The inline CSS and JavaScript of the board pages (`leaderboard.html`). Nothing is loaded from
the network: system fonts, no libraries. The script only enhances a page that is complete
without it: it sorts the ranked table, filters and searches its rows, and opens a detail panel
when a link points at it."""
from __future__ import annotations

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--accent:#0969da;--flag:#9a3412;
--flag-bg:#fff1e6;--good:#d8f5dd;--bad:#ffe4e1;--hit:9,105,218;--miss:207,34,46;color-scheme:light}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;background:#fff;color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header,main,footer{max-width:1240px;margin:0 auto;padding:0 20px}
header{padding-top:20px}
h1{font-size:1.65rem;line-height:1.25;margin:0 0 4px}
h2{font-size:1.25rem;margin:36px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:1.05rem;margin:20px 0 8px}
h4{font-size:.95rem;margin:0 0 8px}
h5{font-size:.85rem;margin:14px 0 6px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
p{margin:8px 0;max-width:78ch}
a{color:var(--accent)}
code{font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);
padding:1px 4px;border-radius:4px;overflow-wrap:anywhere}
.subtitle,.muted,.pm{color:var(--muted)}
.pm{font-size:.85em}
.toc{display:flex;flex-wrap:wrap;gap:4px 16px;margin:12px 0 0;padding:10px 0;border-bottom:1px solid var(--line)}
.toc a{text-decoration:none;font-weight:500}
.toc a:hover{text-decoration:underline}
.filters{display:flex;flex-wrap:wrap;gap:12px 20px;align-items:flex-end;margin:8px 0 12px;padding:12px;
background:var(--soft);border:1px solid var(--line);border-radius:8px}
.filters[hidden]{display:none}
.control{display:flex;flex-direction:column;gap:4px;font-size:.85rem;font-weight:600;min-width:0}
.control.check{flex-direction:row;align-items:center;gap:8px;padding-bottom:6px}
.control input[type=search],.control select{font:inherit;font-weight:400;font-size:.95rem;padding:6px 8px;
border:1px solid var(--line);border-radius:6px;background:#fff;color:var(--fg);max-width:100%}
.control input[type=search]{width:16rem}
.control input[type=checkbox]{width:1.05rem;height:1.05rem;margin:0}
.status{margin:0 0 0 auto;font-size:.85rem;color:var(--muted);align-self:center}
.table-wrap{max-width:100%;overflow-x:auto;border:1px solid var(--line);border-radius:8px;margin:8px 0 12px;
background:#fff}
table{border-collapse:separate;border-spacing:0;font-variant-numeric:tabular-nums;font-size:.9rem;min-width:100%}
caption{caption-side:top;text-align:left;padding:10px 12px;font-size:.85rem;color:var(--muted);
border-bottom:1px solid var(--line)}
.cap{position:sticky;left:12px;display:inline-block;max-width:calc(100vw - 72px);white-space:normal}
th,td{padding:6px 9px;text-align:left;white-space:nowrap;border-bottom:1px solid var(--line);vertical-align:top}
table.claims td{white-space:normal;min-width:7em}
table.claims td:nth-child(2),table.claims td:nth-child(3),table.claims td:nth-child(9){min-width:16em}
tbody tr:last-child>*{border-bottom:0}
thead th{background:var(--soft);font-weight:600;font-size:.82rem;vertical-align:bottom}
th.num,td.num{text-align:right}
tbody tr:hover>td,tbody tr:hover>th{background:#f3f7fc}
th[scope=row]{font-weight:600}
.board td:nth-child(2),.board th:nth-child(2){position:sticky;left:0;background:#fff;z-index:1;
box-shadow:1px 0 0 var(--line)}
.board thead th:nth-child(2){background:var(--soft)}
.board td:first-child{font-weight:700;font-size:1rem}
.sort{all:unset;cursor:pointer;display:inline-flex;gap:4px;align-items:baseline;border-radius:4px;padding:1px 2px}
.sort:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
.sort::after{content:"\\2195";color:#afb8c1;font-size:.8em}
[aria-sort=ascending] .sort::after{content:"\\25B2";color:var(--accent)}
[aria-sort=descending] .sort::after{content:"\\25BC";color:var(--accent)}
.board:not(.sortable) .sort{cursor:default}
.board:not(.sortable) [aria-sort=none] .sort::after{content:none}
.tie{color:var(--muted);font-weight:400;font-size:.8em;margin-left:2px}
.ext{display:block;font-size:.78rem;color:var(--muted)}
.more{font-size:.78rem;margin-left:6px}
.flagmark{display:inline-block;min-width:1.4em;padding:0 5px;margin-right:3px;border-radius:10px;
background:var(--flag-bg);color:var(--flag);font-weight:700;text-align:center;text-decoration:none;font-size:.8rem}
.empty{padding:10px 12px;color:var(--muted)}
.empty[hidden]{display:none}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;list-style:none;padding:0;margin:4px 0 8px;font-size:.82rem}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.flag-legend{font-size:.85rem;color:var(--muted);max-width:none}
.flag-legend .item{display:inline-block;margin-right:10px;white-space:nowrap}
details.entry{border:1px solid var(--line);border-radius:8px;margin:10px 0;background:#fff}
details.entry>summary{cursor:pointer;padding:10px 14px;list-style-position:inside;border-radius:8px}
details.entry>summary:focus-visible{outline:2px solid var(--accent);outline-offset:2px}
details.entry[open]>summary{border-bottom:1px solid var(--line);background:var(--soft);border-radius:8px 8px 0 0}
.badge{display:inline-block;min-width:2.2em;text-align:center;padding:0 6px;border-radius:10px;
background:var(--fg);color:#fff;font-size:.8rem;font-weight:700}
.panel{padding:14px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,440px),1fr));gap:18px}
.grid>section{min-width:0}
.panel>section.best-known{margin-top:18px}
h4.seeds{margin:22px 0 4px;padding-top:14px;border-top:1px solid var(--line)}
.seed{margin-top:10px}
.seed h4{font-size:.9rem}
.confusion{min-width:0}
.chart{display:block;max-width:100%;height:auto}
.chart .gridline{stroke:#eaeef2}
.chart .axis-line{stroke:#8c959f}
.chart text{font-size:11px;fill:var(--muted)}
.chart .axis{font-size:12px;fill:var(--fg)}
.chart .bar{fill:#8fb8e8}
.chart .bar.worst{fill:#cf222e}
.tag{font-size:.72rem;font-weight:600;color:#cf222e;margin-left:4px}
ul.flags{padding-left:18px;margin:4px 0}
ul.flags li{margin-bottom:8px}
ul.flags li.flag strong{color:var(--flag)}
ul.plain{list-style:none;padding:0;margin:0}
dl.facts{display:grid;grid-template-columns:minmax(7rem,max-content) minmax(0,1fr);gap:4px 14px;margin:6px 0;
font-size:.88rem}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;min-width:0;overflow-wrap:anywhere}
.links{font-weight:600}
.confusion td{padding:4px 8px;min-width:2.4em}
.confusion td.hit{background:rgba(var(--hit),calc(var(--a)*.45))}
.confusion td.miss{background:rgba(var(--miss),calc(var(--a)*.6))}
.significance td.better{background:var(--good)}
.significance td.worse{background:var(--bad)}
.significance td.diag{color:#afb8c1;text-align:center}
.key{display:inline-block;padding:0 8px;border-radius:4px;border:1px solid var(--line);margin-right:6px}
.key.better{background:var(--good)}
.key.worse{background:var(--bad)}
.legend-line{font-size:.82rem;margin:4px 0}
footer{margin-top:40px;padding:16px 20px 32px;color:var(--muted);font-size:.85rem;border-top:1px solid var(--line)}
@media (max-width:600px){
body{font-size:14px}
header,main,footer{padding-left:12px;padding-right:12px}
h1{font-size:1.35rem}
.filters{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:10px 12px}
.filters .control:first-child{grid-column:1/-1}
.control input[type=search],.control select{width:100%}
.status{margin:0;text-align:right}
th,td{padding:6px 9px}
dl.facts{grid-template-columns:minmax(0,1fr)}
dl.facts dd{margin-bottom:6px}
}
"""

JS = """
(function () {
  "use strict";
  var table = document.getElementById("board-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var current = {col: 0, dir: 1};

  function key(row, col, numeric) {
    var v = row.cells[col].getAttribute("data-value");
    return numeric ? parseFloat(v) : v;
  }

  function sortBy(col) {
    var th = heads[col];
    var numeric = th.getAttribute("data-type") === "num";
    var first = th.getAttribute("data-first") === "descending" ? -1 : 1;
    var dir = current.col === col ? -current.dir : first;
    current = {col: col, dir: dir};
    rows.slice().sort(function (a, b) {
      var x = key(a, col, numeric), y = key(b, col, numeric);
      var c = numeric ? x - y : (x < y ? -1 : (x > y ? 1 : 0));
      return dir * c || (+a.getAttribute("data-order") - +b.getAttribute("data-order"));
    }).forEach(function (row) { body.appendChild(row); });
    heads.forEach(function (h, i) {
      if (h.hasAttribute("aria-sort")) {
        h.setAttribute("aria-sort", i === col ? (dir > 0 ? "ascending" : "descending") : "none");
      }
    });
  }

  table.classList.add("sortable");
  heads.forEach(function (th, i) {
    var button = th.querySelector("button.sort");
    if (button) { button.addEventListener("click", function () { sortBy(i); }); }
  });

  var hide = document.getElementById("filter-flagged");
  var fidelity = document.getElementById("filter-fidelity");
  var architecture = document.getElementById("filter-architecture");
  var search = document.getElementById("filter-search");
  var status = document.getElementById("filter-status");
  var empty = document.getElementById("filter-empty");

  function apply() {
    var q = search.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var ok = !(hide.checked && row.getAttribute("data-flagged") === "1")
        && (fidelity.value === "" || row.getAttribute("data-fidelity") === fidelity.value)
        && (architecture.value === "" || row.getAttribute("data-architecture") === architecture.value)
        && row.getAttribute("data-defense").toLowerCase().indexOf(q) !== -1;
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    status.textContent = shown === rows.length ? "Showing all " + rows.length + " entries"
      : "Showing " + shown + " of " + rows.length + " entries";
    empty.hidden = shown > 0;
  }

  [hide, fidelity, architecture].forEach(function (el) { el.addEventListener("change", apply); });
  search.addEventListener("input", apply);
  document.getElementById("filters").hidden = false;
  apply();

  function openTarget(id) {
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === "DETAILS") { el.open = true; }
  }
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a[href^='#detail-']") : null;
    if (a) { openTarget(a.getAttribute("href").slice(1)); }
  });
  window.addEventListener("hashchange", function () { openTarget(location.hash.slice(1)); });
  openTarget(location.hash.slice(1));
}());
"""
