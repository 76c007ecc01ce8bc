import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  ScatterController,
  Tooltip,
  type ChartConfiguration,
} from 'chart.js';
import { h } from './dom.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, ScatterController, Tooltip, Legend, Filler);
Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", sans-serif';
Chart.defaults.animation = false;

export const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#64748b'];

/** Charts of the page being replaced are destroyed, so their listeners do not pile up. */
const live = new Set<Chart>();
export function destroyCharts(): void {
  for (const c of live) c.destroy();
  live.clear();
}

function mount(config: ChartConfiguration, small = false): HTMLElement {
  const canvas = h('canvas');
  const box = h('div', { class: small ? 'chart small' : 'chart' }, canvas);
  // Chart.js measures its container, so build the chart once the box is in the document.
  queueMicrotask(() => live.add(new Chart(canvas, config)));
  return box;
}

export interface Interval {
  readonly label: string;
  readonly estimate: number;
  readonly ci: readonly [number, number] | null;
  /** A second, wider interval drawn beside the first (e.g. the always-valid sequential CI). */
  readonly ci2?: readonly [number, number] | null;
}

/** Horizontal confidence intervals around zero (a forest plot): one row per label. */
export function intervalChart(rows: readonly Interval[], opts: { ciLabel: string; ci2Label?: string; xLabel: string; small?: boolean }): HTMLElement {
  const labels = rows.map((r) => r.label);
  const datasets: ChartConfiguration<'bar'>['data']['datasets'] = [
    { label: opts.ciLabel, data: rows.map((r) => (r.ci ? [r.ci[0], r.ci[1]] : null)) as unknown as number[], backgroundColor: 'rgba(37,99,235,0.55)', barPercentage: 0.5 },
  ];
  if (opts.ci2Label)
    datasets.push({ label: opts.ci2Label, data: rows.map((r) => (r.ci2 ? [r.ci2[0], r.ci2[1]] : null)) as unknown as number[], backgroundColor: 'rgba(100,116,139,0.35)', barPercentage: 0.5 });
  const estimate = { type: 'scatter' as const, label: 'estimate', data: rows.map((r) => ({ x: r.estimate, y: r.label })), backgroundColor: '#111827', pointRadius: 4 };
  return mount(
    {
      type: 'bar',
      data: { labels, datasets: [...datasets, estimate as never] },
      options: {
        indexAxis: 'y',
        maintainAspectRatio: false,
        scales: { x: { title: { display: true, text: opts.xLabel } }, y: { type: 'category', labels } },
        plugins: { legend: { position: 'bottom' } },
      },
    } as ChartConfiguration,
    opts.small ?? rows.length < 4,
  );
}

export function barChart(labels: readonly string[], series: readonly { label: string; data: readonly (number | null)[] }[], opts: { yLabel: string; max?: number; small?: boolean }): HTMLElement {
  return mount(
    {
      type: 'bar',
      data: { labels: [...labels], datasets: series.map((s, i) => ({ label: s.label, data: [...s.data], backgroundColor: COLORS[i % COLORS.length] })) },
      options: {
        maintainAspectRatio: false,
        scales: { y: { beginAtZero: true, ...(opts.max !== undefined ? { max: opts.max } : {}), title: { display: true, text: opts.yLabel } } },
        plugins: { legend: { position: 'bottom', display: series.length > 1 } },
      },
    } as ChartConfiguration,
    opts.small,
  );
}

export function lineChart(series: readonly { label: string; points: readonly { x: number; y: number }[]; dashed?: boolean }[], opts: { xLabel: string; yLabel: string; small?: boolean }): HTMLElement {
  return mount(
    {
      type: 'line',
      data: {
        datasets: series.map((s, i) => ({
          label: s.label,
          data: s.points.map((p) => ({ x: p.x, y: p.y })),
          borderColor: COLORS[i % COLORS.length],
          backgroundColor: COLORS[i % COLORS.length],
          ...(s.dashed ? { borderDash: [6, 4] } : {}),
          tension: 0,
        })),
      },
      options: {
        maintainAspectRatio: false,
        parsing: false,
        scales: { x: { type: 'linear', title: { display: true, text: opts.xLabel } }, y: { title: { display: true, text: opts.yLabel } } },
        plugins: { legend: { position: 'bottom' } },
      },
    } as ChartConfiguration,
    opts.small,
  );
}
