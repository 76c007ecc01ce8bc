/** A self-contained HTML learning-curve chart (inline SVG, no scripts, no external assets). Pure. */
export interface Series {
  readonly name: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number])[];
  readonly dashed?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderChart(opts: { title: string; subtitle?: string; xLabel: string; yLabel: string; series: readonly Series[]; notes?: readonly string[] }): string {
  const W = 860;
  const H = 440;
  const m = { l: 70, r: 180, t: 30, b: 50 };
  const all = opts.series.flatMap((s) => s.points);
  const xMax = Math.max(1, ...all.map((p) => p[0]));
  let yMin = Math.min(...all.map((p) => p[1]));
  let yMax = Math.max(...all.map((p) => p[1]));
  const pad = (yMax - yMin) * 0.08 || 0.05;
  yMin -= pad;
  yMax += pad;
  const x = (v: number) => m.l + (v / xMax) * (W - m.l - m.r);
  const y = (v: number) => H - m.b - ((v - yMin) / (yMax - yMin)) * (H - m.t - m.b);
  const ticks = 5;
  const grid: string[] = [];
  for (let i = 0; i <= ticks; i++) {
    const yv = yMin + ((yMax - yMin) * i) / ticks;
    const xv = (xMax * i) / ticks;
    grid.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y(yv)}" y2="${y(yv)}" stroke="#eee"/>`);
    grid.push(`<text x="${m.l - 8}" y="${y(yv) + 4}" text-anchor="end" font-size="11">${yv.toFixed(3)}</text>`);
    grid.push(`<text x="${x(xv)}" y="${H - m.b + 18}" text-anchor="middle" font-size="11">${Math.round(xv)}</text>`);
  }
  const lines = opts.series.map((s, i) => {
    const d = s.points.map((p, k) => `${k ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    const ly = m.t + 18 * i;
    return (
      `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>` +
      `<line x1="${W - m.r + 12}" x2="${W - m.r + 36}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>` +
      `<text x="${W - m.r + 42}" y="${ly + 4}" font-size="12">${esc(s.name)}</text>`
    );
  });
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="system-ui, sans-serif">` +
    grid.join('') +
    `<line x1="${m.l}" x2="${W - m.r}" y1="${H - m.b}" y2="${H - m.b}" stroke="#333"/><line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${H - m.b}" stroke="#333"/>` +
    lines.join('') +
    `<text x="${(m.l + W - m.r) / 2}" y="${H - 10}" text-anchor="middle" font-size="12">${esc(opts.xLabel)}</text>` +
    `<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(opts.yLabel)}</text>` +
    `</svg>`;
  const notes = (opts.notes ?? []).map((n) => `<li>${esc(n)}</li>`).join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(opts.title)}</title></head><body style="font-family: system-ui, sans-serif; margin: 24px">
<h2>${esc(opts.title)}</h2>${opts.subtitle ? `<p>${esc(opts.subtitle)}</p>` : ''}
${svg}
${notes ? `<ul>${notes}</ul>` : ''}
</body></html>
`;
}
