import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { chromium, type Browser } from 'playwright-core';
import { renderChart } from '../../src/learner/chart.js';
import { CHROMIUM, CHROMIUM_ARGS } from './harness.js';

/** The learning-curve file of `apportion simulate` is drawn by Chart.js, inlined, in a real browser. */
let browser: Browser;
before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});
after(async () => {
  await browser?.close();
});

declare const document: { getElementById(id: string): { width: number; height: number; getContext(k: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } } | null };
declare const window: { Chart?: { getChart(el: unknown): { data: { datasets: { label: string; data: unknown[] }[] } } | undefined } };

describe('simulate learning-curve chart', () => {
  it('draws every series with its points and no script error, for generated curves', async () => {
    const curves = fc.sample(
      fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 2, maxLength: 30 })), { minLength: 1, maxLength: 4 }),
      { numRuns: 3, seed: 18 },
    );
    for (const c of curves) {
      const html = renderChart({
        title: 'learning </script><b>curve</b>',
        xLabel: 'outcomes',
        yLabel: 'quality',
        series: c.map(([name, ys], i) => ({ name, color: ['#d62728', '#2ca02c', '#1f77b4', '#7f7f7f'][i]!, dashed: i > 0, points: ys.map((y, k) => [k * 250, y] as const) })),
      });
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.setContent(html);
      const drawn = await page.evaluate(() => {
        const canvas = document.getElementById('curve')!;
        const chart = window.Chart!.getChart(canvas)!;
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let painted = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) painted++;
        return { painted, series: chart.data.datasets.map((d) => [d.label, d.data.length] as const) };
      });
      await page.close();
      assert.deepEqual(errors, []);
      assert.deepEqual(drawn.series, c.map(([name, ys]) => [name, ys.length]));
      assert.ok(drawn.painted > 1000, 'the canvas was drawn on');
    }
  });
});
