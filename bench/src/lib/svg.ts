// The SVG documents the benchmarks draw: escaping and the common frame (white page, title).

/** Text escaped for an SVG text node or attribute. */
export function svgEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}

/** A whole SVG document: a white `width` × `height` page, `title` at the top left, then `parts`. */
export function svgDocument(width: number, height: number, title: string, parts: readonly string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${svgEscape(title)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}
