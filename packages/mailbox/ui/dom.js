// DOM helpers. Every value reaches the page through text nodes and attribute setters, never
// through HTML parsing, so a message body such as `<script>` is shown as text, not run.

/**
 * Creates an element. `props`: `class`, `text`, `title`, `dataset` (object), `on<event>`
 * (listeners), anything else set as an attribute (`false`/`null`/`undefined` skip it).
 * Children: nodes, strings (as text), arrays, and `null`/`false` (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (typeof child === 'string' || typeof child === 'number')
      el.append(document.createTextNode(String(child)));
    else el.append(child);
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * Fills `parent` with one element per item, keeping the element of an item whose key and
 * signature did not change: a table refreshed every second must not swap the button under a
 * pointer between mousedown and mouseup (the click would be lost), nor churn the DOM for nothing.
 */
export function keyed(parent, items, keyOf, sigOf, render) {
  const old = new Map();
  for (const el of parent.children) if (el.dataset.key !== undefined) old.set(el.dataset.key, el);
  const next = items.map((item) => {
    const key = String(keyOf(item));
    const sig = sigOf(item);
    const el = old.get(key);
    if (el !== undefined && el.dataset.sig === sig) return el;
    const fresh = render(item);
    fresh.dataset.key = key;
    fresh.dataset.sig = sig;
    return fresh;
  });
  const current = [...parent.children];
  if (current.length !== next.length || current.some((el, i) => el !== next[i]))
    parent.replaceChildren(...next);
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** `14:03:07.120`, with the date in front unless it is today. */
export function fmtTime(value) {
  if (value === null || value === undefined) return '—';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/** `1.2 s`, `3 min`, `250 ms`. */
export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '—';
  const a = Math.abs(ms);
  if (a < 1000) return `${Math.round(ms)} ms`;
  if (a < 60_000) return `${(ms / 1000).toFixed(a < 10_000 ? 1 : 0)} s`;
  if (a < 3_600_000) return `${(ms / 60_000).toFixed(1).replace(/\.0$/, '')} min`;
  if (a < 86_400_000) return `${(ms / 3_600_000).toFixed(1).replace(/\.0$/, '')} h`;
  return `${(ms / 86_400_000).toFixed(1).replace(/\.0$/, '')} d`;
}

/** Relative to now: `in 4.0 s`, `3 min ago`. */
export function fmtRel(value) {
  if (value === null || value === undefined) return '';
  const ms = new Date(value).getTime() - Date.now();
  return ms >= 0 ? `in ${fmtMs(ms)}` : `${fmtMs(-ms)} ago`;
}

export function fmtBytes(n) {
  if (typeof n !== 'number') return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

const numberFormat = new Intl.NumberFormat('en-US');
export function fmtNum(n) {
  return typeof n === 'number' ? numberFormat.format(n) : '—';
}

export function fmtRate(r) {
  if (typeof r !== 'number' || !Number.isFinite(r)) return '—';
  return r >= 100 ? numberFormat.format(Math.round(r)) : r.toFixed(1);
}

/** pandora's statuses plus Dead. */
export const STATUS = Object.freeze({
  1: 'Confirmed',
  2: 'Rejected',
  4: 'Timeout',
  8: 'Not delivered',
  16: 'Dead',
});
export const statusName = (s) => STATUS[s] ?? `status ${s}`;
