// Times are rendered by the server as absolute <time datetime="..."> elements; this turns the ones
// marked data-relative into "2 min ago" (keeping the absolute time, in the viewer's zone, in the
// title) and re-renders them every 30 s. The timer only rewrites text: it never fetches.
import { $$ } from "./dom.js";

const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const shortTime = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const shortDate = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const longDate = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });

export function relative(date, now = Date.now()) {
  const seconds = Math.round((now - date.getTime()) / 1000);
  const future = seconds < 0;
  const s = Math.abs(seconds);
  const say = (n, unit) => (future ? `in ${n} ${unit}` : `${n} ${unit} ago`);
  if (s < 45) return future ? "in a moment" : "just now";
  if (s < 90) return say(1, "min");
  if (s < 45 * 60) return say(Math.round(s / 60), "min");
  if (s < 22 * 3600) return say(Math.max(1, Math.round(s / 3600)), "h");
  const days = Math.round(s / 86400);
  if (days <= 1) return future ? "tomorrow" : "yesterday";
  if (days < 7) return say(days, "days");
  return new Date(date).getFullYear() === new Date(now).getFullYear() ? shortDate.format(date) : longDate.format(date);
}

export function duration(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s < 0) return "";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function renderTimes(root = document) {
  const now = Date.now();
  for (const el of $$("time[data-relative][datetime]", root)) {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    el.textContent = relative(date, now);
    el.title = absolute.format(date);
  }
  for (const el of $$("time[data-clock][datetime]", root)) {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    el.textContent = clock.format(date);
    el.title = absolute.format(date);
  }
  for (const el of $$("time[data-absolute][datetime]", root)) {
    const date = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    const today = new Date().toDateString() === date.toDateString();
    el.textContent = today ? shortTime.format(date) : `${shortDate.format(date)}, ${shortTime.format(date)}`;
    el.title = absolute.format(date);
  }
  for (const el of $$("[data-duration-seconds]", root)) {
    const text = duration(el.dataset.durationSeconds);
    if (text) el.textContent = text;
  }
}

/** Point a <time> element at a new instant (or none) and render it. */
export function setTime(el, iso, none = "never") {
  if (!el) return;
  if (iso) {
    el.setAttribute("datetime", iso);
    el.classList.remove("kv-missing");
    renderTimes(el.parentNode || document);
  } else {
    el.removeAttribute("datetime");
    el.removeAttribute("title");
    el.classList.add("kv-missing");
    el.textContent = el.dataset.none || none;
  }
}

export function startClock() {
  renderTimes();
  window.setInterval(() => renderTimes(), 30_000);
}
