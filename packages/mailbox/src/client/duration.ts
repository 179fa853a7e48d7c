/**
 * Go durations (`time.ParseDuration`): `300ms`, `-1.5h`, `2h45m`, `1h30m`, `500us`, `0`. The
 * pandora protocol carries leases, delays and relative times in this form. Shared by the
 * server and the client (no native dependencies).
 */

const UNITS: Readonly<Record<string, number>> = Object.freeze({
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3, // U+00B5
  μs: 1e-3, // U+03BC
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
});

const PART_RE = /^(\d*)(?:\.(\d*))?([a-zµμ]+)/;

/** Go's maximum duration (2^63-1 ns), in ms. */
const MAX_MS = 9_223_372_036_854.775;

/**
 * Parses a Go duration into milliseconds (may be fractional or negative). Returns undefined
 * for anything Go's `time.ParseDuration` rejects (empty, missing unit, unknown unit, overflow).
 */
export function parseGoDuration(input: string): number | undefined {
  if (typeof input !== 'string' || input.length === 0 || input.length > 100) return undefined;
  let s = input;
  let sign = 1;
  if (s[0] === '-' || s[0] === '+') {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s.length === 0) return undefined;
  let total = 0;
  while (s.length > 0) {
    const m = PART_RE.exec(s);
    if (m === null) return undefined;
    const [all, int = '', frac, unit = ''] = m;
    if (int.length === 0 && (frac === undefined || frac.length === 0)) return undefined;
    const scale = UNITS[unit];
    if (scale === undefined) return undefined;
    total += Number(`${int.length === 0 ? '0' : int}.${frac ?? '0'}`) * scale;
    s = s.slice(all.length);
  }
  if (!Number.isFinite(total) || total > MAX_MS) return undefined;
  return sign * total;
}

/** Formats milliseconds as a Go duration string (`1h30m0s`, `500ms`, `0s`), as Go's `Duration.String`. */
export function formatGoDuration(ms: number): string {
  if (!Number.isFinite(ms)) throw new RangeError('duration must be finite');
  if (ms === 0) return '0s';
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(ms);
  if (rest < 1000) {
    if (rest >= 1) return `${sign}${trim(rest)}ms`;
    if (rest >= 1e-3) return `${sign}${trim(rest * 1e3)}µs`;
    return `${sign}${trim(rest * 1e6)}ns`;
  }
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = `${trim(rest / 1000)}s`;
  if (h > 0) return `${sign}${h}h${m}m${s}`;
  if (m > 0) return `${sign}${m}m${s}`;
  return `${sign}${s}`;
}

function trim(n: number): string {
  return String(Number(n.toFixed(9)));
}
