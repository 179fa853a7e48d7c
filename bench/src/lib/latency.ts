// Latency distributions of the peer benchmark: the percentiles a consumer reports and a chart
// of them (latency against percentile on a "nines" scale, both axes logarithmic), so a tail
// shows as the part of a curve that leaves the others.

import { svgDocument, svgEscape as esc } from './svg.js';

/** The percentiles of the latency curve a consumer reports. */
export const LATENCY_PERCENTILES = [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99] as const;

export interface LatencyCurve {
  readonly label: string;
  /** Latency in ms at each of LATENCY_PERCENTILES. */
  readonly curve: readonly number[];
}

const COLORS = ['#e53e3e', '#38a169', '#d69e2e', '#805ad5', '#718096', '#2b6cb0', '#dd6b20', '#d53f8c'];

/** An SVG line chart of latency curves; `targets` marks points (percentile, ms) as crosses. */
export function latencyChart(
  curves: readonly LatencyCurve[],
  title: string,
  targets: readonly { readonly percentile: number; readonly ms: number; readonly label: string }[] = [],
): string {
  const width = 1060;
  const height = 520;
  const left = 70;
  const right = 420;
  const top = 50;
  const bottom = 60;
  const nines = (p: number): number => -Math.log10(1 - p / 100);
  const x0 = nines(LATENCY_PERCENTILES[0]);
  const x1 = nines(LATENCY_PERCENTILES[LATENCY_PERCENTILES.length - 1]!);
  const finite = curves.flatMap((c) => c.curve.filter((v) => Number.isFinite(v) && v > 0));
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(0.1, ...finite))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(10, ...finite))));
  const px = (p: number): number => left + ((nines(p) - x0) / (x1 - x0)) * (width - left - right);
  const py = (ms: number): number =>
    top +
    (1 - (Math.log10(Math.max(ms, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) *
      (height - top - bottom);
  const parts: string[] = [];
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    const y = py(d).toFixed(1);
    parts.push(
      `<line x1="${left}" x2="${width - right}" y1="${y}" y2="${y}" stroke="#e2e8f0"/>`,
      `<text x="${left - 6}" y="${Number(y) + 4}" text-anchor="end" font-size="11">${d >= 1 ? d : d.toPrecision(1)} ms</text>`,
    );
  }
  for (const p of LATENCY_PERCENTILES) {
    const x = px(p).toFixed(1);
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${top}" y2="${height - bottom}" stroke="#edf2f7"/>`,
      `<text x="${x}" y="${height - bottom + 16}" text-anchor="middle" font-size="11">p${p}</text>`,
    );
  }
  curves.forEach((c, i) => {
    const color = COLORS[i % COLORS.length]!;
    const points = c.curve
      .map((v, j) =>
        Number.isFinite(v) ? `${px(LATENCY_PERCENTILES[j]!).toFixed(1)},${py(v).toFixed(1)}` : '',
      )
      .filter((s) => s !== '')
      .join(' ');
    parts.push(
      `<polyline points="${points}" fill="none" stroke="${color}" stroke-width="2"/>`,
      `<rect x="${width - right + 16}" y="${top + i * 20}" width="14" height="4" fill="${color}"/>`,
      `<text x="${width - right + 36}" y="${top + i * 20 + 6}" font-size="11">${esc(c.label)}</text>`,
    );
  });
  for (const t of targets) {
    const x = px(t.percentile);
    const y = py(t.ms);
    parts.push(
      `<path d="M${(x - 6).toFixed(1)},${(y - 6).toFixed(1)} l12,12 m0,-12 l-12,12" stroke="black" stroke-width="2"/>`,
      `<text x="${(x + 8).toFixed(1)}" y="${(y - 8).toFixed(1)}" font-size="11">${esc(t.label)}</text>`,
    );
  }
  return svgDocument(width, height, title, [
    `<text x="${(left + width - right) / 2}" y="${height - 18}" text-anchor="middle" font-size="12">percentile of send-to-receive latency (nines scale)</text>`,
    ...parts,
  ]);
}
