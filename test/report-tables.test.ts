import { beforeAll, describe, expect, it } from 'vitest';

import { constraintCriterion, formatMeanSd, metricInfo } from '../src/report/format.js';
import { reportHtml } from '../src/report/html.js';
import { readRunFolder, type RunFolder } from '../src/report/run-folder.js';
import { fabricateRun } from './fixtures/fabricate-run.js';
import { tempDir } from './helpers.js';

/** The cells of the table that follows `marker` in the page, as text, row by row (header first). */
function tableAfter(html: string, marker: string): string[][] {
  const start = html.indexOf(marker);
  expect(start, marker).toBeGreaterThanOrEqual(0);
  const tableStart = html.indexOf('<table', start);
  const tableHtml = html.slice(tableStart, html.indexOf('</table>', tableStart));
  return [...tableHtml.matchAll(/<tr>(.*?)<\/tr>/gs)].map((row) => [...row[1]!.matchAll(/<t[hd][^>]*>(.*?)<\/t[hd]>/gs)].map((cell) => cell[1]!.replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>')));
}

describe('metric labels and numbers', () => {
  it('names each flat metric with its unit, V-values in %', () => {
    expect(metricInfo('mae_gy.body')).toMatchObject({ label: 'MAE, body', unit: 'Gy' });
    expect(metricInfo('rmse_gy.all')).toMatchObject({ label: 'RMSE, whole volume', unit: 'Gy' });
    expect(metricInfo('gamma.3%/3mm.pass_rate_pct')).toMatchObject({ label: 'Γ pass rate 3%/3 mm', unit: '%' });
    expect(metricInfo('gamma.3%/3mm_ptv.pass_rate_pct')).toMatchObject({ label: 'Γ pass rate 3%/3 mm, PTVs + 5 mm', unit: '%' });
    expect(metricInfo('dvh.pred.Rectum.V50')).toMatchObject({ label: 'Rectum V50Gy (prediction)', unit: '%', factor: 100 });
    expect(metricInfo('dvh.ref.Rectum.D0.03cc')).toMatchObject({ label: 'Rectum D0.03cc (reference)', unit: 'Gy', structure: 'Rectum', metric: 'D0.03cc' });
    expect(metricInfo('dvh.ref.PTV70.D95')).toMatchObject({ label: 'PTV70 D95% (reference)', unit: 'Gy' });
    expect(metricInfo('constraints.Rectum V50.pred')).toMatchObject({ label: 'Rectum V50Gy (prediction)', unit: '%', factor: 100 });
    expect(metricInfo('constraints.Bowel V45cc.ref')).toMatchObject({ label: 'Bowel V45Gy (reference)', unit: 'cc', factor: 1 });
  });

  it('writes mean ± sd, and for one case the value with n = 1 (never "± –")', () => {
    expect(formatMeanSd(3.18612, 0.04571, 2, 3)).toBe('3.186 ± 0.046');
    expect(formatMeanSd(3.18612, Number.NaN, 1, 3)).toBe('3.186 (n = 1)');
    expect(formatMeanSd(Number.NaN, Number.NaN, 0, 3)).toBe('–');
  });

  it('writes constraint limits as criteria in their unit', () => {
    const v50 = constraintCriterion({ name: 'Rectum V50', structure: 'Rectum', unit: 'fraction', limit: 0.5 });
    expect(v50.text).toBe('V50Gy ≤ 50 %');
    expect(v50.show(0.1234)).toBe('12.3 %');
    expect(constraintCriterion({ name: 'Rectum Dmax', structure: 'Rectum', unit: 'Gy', limit: 74.9 }).text).toBe('Dmax ≤ 74.9 Gy');
    expect(constraintCriterion({ name: 'Bowel V45cc', structure: 'Bowel', unit: 'cc', limit: 195 }).text).toBe('V45Gy ≤ 195 cc');
  });
});

describe('report tables', () => {
  let run: RunFolder;
  let html: string;
  beforeAll(async () => {
    const root = tempDir('vmat-report-tables-');
    const fabricated = await fabricateRun(root, 'tables', { scale: 1.04 });
    run = readRunFolder(fabricated.dir);
    html = reportHtml({ run, figures: [], skipped: [], generatedAt: new Date('2026-12-02T18:00:00Z') });
  });

  it('summarises as a table of metric, mean ± sd and unit, not dotted keys', () => {
    const rows = tableAfter(html, 'Mean ± sd over 2 test cases');
    expect(rows[0]).toEqual(['metric', 'mean ± sd', 'unit']);
    const mae = rows.find((row) => row[0] === 'MAE, body')!;
    const { mean, sd } = run.evaluation!.summary['mae_gy.body']!;
    expect(mae).toEqual(['MAE, body', `${mean.toFixed(3)} ± ${sd.toFixed(3)}`, 'Gy']);
    expect(rows.find((row) => row[0] === 'Γ pass rate 3%/3 mm')![2]).toBe('%');
    for (const row of rows.slice(1)) {
      expect(row[0]).not.toMatch(/^[a-z_]+\.[\w.%/]+$/); // no "mae_gy.body"-style keys
      expect(row[1]).not.toMatch(/\d\.\d{4}/); // not 4 decimals
    }
    // DVH rows: V-values in % of the structure's volume, with the difference.
    const dvh = tableAfter(html, 'DVH metrics (clinical subset)');
    expect(dvh[0]).toEqual(['structure', 'metric', 'reference', 'prediction', 'prediction − reference', 'unit']);
    expect(dvh.find((row) => row[0] === 'PTV70' && row[1] === 'D95%')![5]).toBe('Gy');
    const all = tableAfter(html, 'All ');
    const v50 = all.find((row) => row[0] === 'Rectum' && row[1] === 'V50Gy')!;
    expect(v50[5]).toBe('%');
    const values = run.evaluation!.cases.map((c) => 100 * c.dvh.find((d) => d.structure === 'Rectum')!.reference['V50']!);
    expect(v50[2]).toContain((values.reduce((a, b) => a + b, 0) / values.length).toFixed(1));
  });

  it('writes constraints as criteria with the number of cases that meet them', () => {
    const rows = tableAfter(html, '<h4>Clinical constraints</h4>');
    expect(rows[0]).toEqual(['structure', 'limit', 'reference', 'prediction', 'reference meets it', 'prediction meets it']);
    // The fixture: Bladder V65 ≤ 50 %, reference 10 %, prediction 60 % in both cases.
    expect(rows.find((row) => row[0] === 'Bladder')).toEqual(['Bladder', 'V65Gy ≤ 50 %', '10.0 ± 0.0 %', '60.0 ± 0.0 %', '2 of 2', '0 of 2']);
  });

  it('shows a few clinical columns per case and every metric behind a toggle, one row per metric', () => {
    const perCase = tableAfter(html, '<h3>Per case</h3>');
    expect(perCase[0]!.length).toBeLessThanOrEqual(10);
    expect(perCase[0]).toEqual(['case', 'MAE, body (Gy)', 'MAE, PTV70 (Gy)', 'Γ pass rate 3%/3 mm (%)', 'Γ pass rate 2%/2 mm (%)', 'Γ pass rate 3%/3 mm, PTVs + 5 mm (%)', 'constraints met: reference', 'prediction']);
    expect(perCase.slice(1).map((row) => row[0])).toEqual(['case_0002', 'case_0005']);
    expect(perCase[1]!.at(-1)).toBe('1 of 2');
    const toggle = html.slice(html.indexOf('<details class="all-metrics">'));
    expect(toggle).toMatch(/^<details class="all-metrics"><summary>All \d+ metrics per case/);
    const all = tableAfter(toggle, '<summary>');
    // In the order of cases.csv (the order they were evaluated in).
    expect(all[0]).toEqual(['metric', 'unit', 'case_0005', 'case_0002']);
    expect(all.length - 1).toBe(run.evaluation!.casesTable!.header.length - 1);
    const v65 = all.find((row) => row[0] === 'Bladder V65Gy (prediction)')!;
    expect(v65[1]).toBe('%');
    const case5 = run.evaluation!.cases.find((c) => c.caseId === 'case_0005')!;
    expect(Number(v65[2])).toBeCloseTo(100 * case5.dvh.find((d) => d.structure === 'Bladder')!.prediction['V65']!, 1);
  });

  it('writes the headline as mean ± sd over the cases, and for one case the value with n = 1', () => {
    const { mean, sd } = run.evaluation!.summary['mae_gy.body']!;
    expect(html).toContain(`<span>test MAE (body), mean ± sd over 2 cases</span><b>${mean.toFixed(3)} ± ${sd.toFixed(3)} Gy</b>`);
    const one: RunFolder = {
      ...run,
      evaluation: {
        ...run.evaluation!,
        cases: run.evaluation!.cases.slice(0, 1),
        summary: Object.fromEntries(Object.entries(run.evaluation!.summary).map(([key, value]) => [key, { mean: value.mean, sd: Number.NaN, n: 1 }])),
      },
    };
    const single = reportHtml({ run: one, figures: [], skipped: [] });
    expect(single).toContain(`<span>test MAE (body), n = 1 (no sd)</span><b>${mean.toFixed(3)} Gy</b>`);
    expect(single).not.toMatch(/± –/);
    expect(single).toContain('Mean ± sd over 1 test case (n = 1: no sd)');
    // Under that heading the cells hold the values alone.
    const rows = tableAfter(single, 'Mean ± sd over 1 test case');
    expect(rows.find((row) => row[0] === 'MAE, body')).toEqual(['MAE, body', mean.toFixed(3), 'Gy']);
    expect(tableAfter(single, 'DVH metrics (clinical subset)').slice(1).every((row) => !row.join(' ').includes('n = 1'))).toBe(true);
  });
});
