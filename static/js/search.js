// The top-bar search (#global-search). For now it filters the current page's table or list:
// tables marked [data-searchable] (their tbody rows) and lists marked [data-searchable-list]
// (their <li> children). "/" focuses it from anywhere, Escape clears it. On a page with a server-side
// search (input[data-page-search]), Enter runs that search over every page. On a page with nothing
// to filter, Enter opens the hosts list filtered by the words (?q=...).
import { $, $$, h } from "./dom.js";

const input = () => $("#global-search");

function targets() {
  return $$("[data-searchable], [data-searchable-list]");
}

function norm(text) {
  return text.toLocaleLowerCase().normalize("NFKD").replace(/\s+/g, " ");
}

export function applyFilter() {
  const el = input();
  if (!el) return;
  const words = norm(el.value.trim()).split(" ").filter(Boolean);
  for (const target of targets()) {
    const isTable = target.hasAttribute("data-searchable");
    const rows = isTable ? $$(":scope > tbody > tr:not(.kv-no-match)", target) : $$(":scope > li:not(.kv-no-match)", target);
    let shown = 0;
    for (const row of rows) {
      if (row.dataset.searchText === undefined) row.dataset.searchText = norm(row.textContent);
      const hit = words.every((w) => row.dataset.searchText.includes(w));
      row.hidden = !hit;
      if (hit) shown += 1;
    }
    let none = isTable ? $(":scope > tbody > tr.kv-no-match", target) : $(":scope > li.kv-no-match", target);
    if (words.length && !shown && rows.length) {
      if (!none) {
        const text = `Nothing here matches “${el.value.trim()}”.`;
        if (isTable) {
          const cols = $$(":scope > thead th", target).length || 1;
          none = h("tr", { class: "kv-no-match" }, h("td", { colspan: cols }, text));
          $(":scope > tbody", target)?.append(none);
        } else {
          none = h("li", { class: "kv-no-match kv-card-empty" }, text);
          target.append(none);
        }
      } else {
        (isTable ? none.firstElementChild : none).textContent = `Nothing here matches “${el.value.trim()}”.`;
      }
    } else if (none) {
      none.remove();
    }
  }
}

/** Rows re-rendered by a live update must be searched afresh. */
export function resetSearchCache(root = document) {
  for (const row of $$("[data-search-text]", root)) delete row.dataset.searchText;
  applyFilter();
}

export function initSearch() {
  const el = input();
  if (!el) return;
  const first = targets()[0];
  const pageSearch = $("input[data-page-search]");
  el.placeholder = first?.dataset.searchLabel || pageSearch?.dataset.searchLabel || (first ? "Filter this page" : "Find a host");
  el.setAttribute("aria-label", el.placeholder);

  const q = new URLSearchParams(window.location.search).get("q");
  if (q && first) {
    el.value = q;
    applyFilter();
  }

  el.addEventListener("input", applyFilter);
  el.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      el.value = "";
      applyFilter();
      el.blur();
    }
  });
  el.form?.addEventListener("submit", (event) => {
    event.preventDefault();
    // A page that searches on the server (the VM list) has its own search field: Enter searches
    // every page there, while typing filters the rows in view.
    const pageSearch = $("input[data-page-search]");
    if (pageSearch?.form) {
      pageSearch.value = el.value.trim();
      pageSearch.form.requestSubmit();
      return;
    }
    if (!targets().length && el.value.trim()) {
      const url = new URL(document.body.dataset.urlHosts || "/hosts/", window.location.origin);
      url.searchParams.set("q", el.value.trim());
      window.location.assign(url);
    }
  });

  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    const t = event.target;
    if (t instanceof HTMLElement && (t.isContentEditable || t.closest("input, textarea, select, [contenteditable]"))) return;
    event.preventDefault();
    el.focus();
    el.select();
  });
}
