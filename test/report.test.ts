import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { PNG } from 'pngjs';
import { chromium } from 'playwright-core';
import { beforeAll, describe, expect, it } from 'vitest';

import { fabricateRun, type FabricatedRun } from './fixtures/fabricate-run.js';
import { runCli, tempDir } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

describe('vmat-native report', () => {
  const root = tempDir('vmat-report-');
  let run: FabricatedRun;
  let reportPath: string;
  beforeAll(async () => {
    run = await fabricateRun(root, 'grad_loss_0.1', { scale: 1.04, gradientWeight: 0.1 });
    reportPath = join(run.dir, 'report.html');
  });

  it('writes one self-contained HTML file with the tables and the figures inlined', () => {
    const result = runCli(['report', run.dir]);
    expect(result.status).toBe(0);
    expect(result.stdout.trim()).toBe(reportPath);
    const html = readFileSync(reportPath, 'utf8');
    expect(html).not.toMatch(/https?:\/\//);
    expect(html).not.toMatch(/<script|<link/i);
    const sources = [...html.matchAll(/src="([^"]*)"/g)].map((m) => m[1]);
    expect(sources.length).toBe(6); // curves, loss components, dose slices, DVH, gamma map, gamma histogram
    for (const source of sources) expect(source.startsWith('data:image/png;base64,')).toBe(true);
    // Reproducibility record, configuration, split and evaluation tables, computed from the run's files.
    expect(html).toContain('0123456789abcdef0123456789abcdef01234567');
    expect(html).toContain('gradientLossWeight');
    expect(html).toContain('case_0000, case_0001, case_0002, case_0003');
    expect(html).toContain('Bladder V65');
    expect(html).toContain('FAIL');
    expect(html).toContain(`${run.testMaeGy.toFixed(3)} ±`);
  });

  it.skipIf(!existsSync(CHROMIUM))('renders in headless Chromium with no console errors and every figure loaded', async () => {
    if (!existsSync(reportPath)) expect(runCli(['report', run.dir]).status).toBe(0);
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
      const problems: string[] = [];
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push(`console: ${message.text()}`);
      });
      page.on('pageerror', (error) => problems.push(`page: ${error.message}`));
      page.on('request', (request) => {
        if (!request.url().startsWith('data:') && !request.url().startsWith('file:')) problems.push(`network: ${request.url()}`);
      });
      await page.goto(pathToFileURL(reportPath).href, { waitUntil: 'load' });
      const images = await page.$$eval('img', (elements) => elements.map((img) => ({ complete: img.complete, width: img.naturalWidth, height: img.naturalHeight, alt: img.alt })));
      expect(images.length).toBe(6);
      for (const image of images) {
        expect(image.complete, image.alt).toBe(true);
        expect(image.width, image.alt).toBeGreaterThan(0);
        expect(image.height, image.alt).toBeGreaterThan(0);
      }
      expect(await page.textContent('h1')).toContain('grad_loss_0.1');
      // The tables a physicist reads: the summary with units, a narrow per-case table, every metric behind a toggle.
      const summaryRows = await page.$$eval('table.summary tr', (rows) => rows.map((row) => row.textContent ?? ''));
      expect(summaryRows.some((row) => row.includes('MAE, body') && row.includes('±') && row.includes('Gy'))).toBe(true);
      expect(await page.$$eval('table.cases tr:first-child th', (cells) => cells.length)).toBeLessThanOrEqual(10);
      const allMetrics = page.locator('details.all-metrics table');
      expect(await allMetrics.isVisible()).toBe(false);
      await page.click('details.all-metrics > summary');
      expect(await allMetrics.isVisible()).toBe(true);
      await page.click('details.all-metrics > summary');
      // Nothing widens the page beyond the window (wide tables scroll inside their box).
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(1280);
      await page.locator('#evaluation').scrollIntoViewIfNeeded();
      await page.screenshot({ path: join(root, 'report-evaluation.png') });
      const shot = PNG.sync.read(await page.screenshot({ fullPage: true, path: join(root, 'report.png') }));
      expect(shot.width).toBe(1280);
      // The page is long (five figures and the tables), and not blank: many distinct colours from the figures.
      expect(shot.height).toBeGreaterThan(3000);
      const colours = new Set<number>();
      for (let i = 0; i < shot.data.length; i += 4 * 97) colours.add((shot.data[i] << 16) | (shot.data[i + 1] << 8) | shot.data[i + 2]);
      expect(colours.size).toBeGreaterThan(200);
      expect(problems).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it.runIf(!existsSync(CHROMIUM))('cannot check the page in a browser: Chromium is absent (install it with scripts/setup.sh --test)', () => {
    process.stderr.write(`SKIPPED: the headless-browser test of report.html needs ${CHROMIUM}; run 'bash scripts/setup.sh --test'\n`);
  });
});
