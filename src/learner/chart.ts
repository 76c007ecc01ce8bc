import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/**
 * A self-contained HTML learning-curve chart drawn by Chart.js (the console's chart library), with the library
 * inlined so the file opens offline and from anywhere. Pure apart from reading Chart.js' bundle once.
 */
export interface Series {
  readonly name: string;
  readonly color: string;
  readonly points: readonly (readonly [number, number])[];
  readonly dashed?: boolean;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
/** JSON that is safe inside a <script> element. */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');

let chartJs: string | undefined;
function chartJsSource(): string {
  // The UMD build is not in chart.js' package exports: find it beside the CommonJS entry (dist/chart.cjs).
  chartJs ??= readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js'), 'utf8').replace(/<\/script/gi, '<\\/script');
  return chartJs;
}

export function renderChart(opts: { title: string; subtitle?: string; xLabel: string; yLabel: string; series: readonly Series[]; notes?: readonly string[] }): string {
  const config = {
    type: 'line',
    data: {
      datasets: opts.series.map((s) => ({
        label: s.name,
        data: s.points.map(([x, y]) => ({ x, y })),
        borderColor: s.color,
        backgroundColor: s.color,
        borderWidth: 2,
        pointRadius: 2,
        tension: 0.1,
        ...(s.dashed ? { borderDash: [6, 4] } : {}),
      })),
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      parsing: false,
      scales: { x: { type: 'linear', title: { display: true, text: opts.xLabel } }, y: { title: { display: true, text: opts.yLabel } } },
      plugins: { legend: { position: 'right' } },
    },
  };
  const notes = (opts.notes ?? []).map((n) => `<li>${esc(n)}</li>`).join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(opts.title)}</title></head><body style="font-family: system-ui, sans-serif; margin: 24px">
<h2>${esc(opts.title)}</h2>${opts.subtitle ? `<p>${esc(opts.subtitle)}</p>` : ''}
<div style="position: relative; width: 900px; height: 440px"><canvas id="curve"></canvas></div>
${notes ? `<ul>${notes}</ul>` : ''}
<script>${chartJsSource()}</script>
<script>new Chart(document.getElementById('curve'), ${scriptJson(config)});</script>
</body></html>
`;
}
