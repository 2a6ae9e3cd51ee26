/** Vega / Vega-Lite specifications → SVG (headless `view.toSVG()`) → PNG (resvg), with one journal-style theme. */
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

import { FONT_FAMILY, FONT_FILES } from './fonts.js';

/** Shared look: readable labels, no chart border, white background, titles with units. */
export const THEME_CONFIG = {
  font: FONT_FAMILY,
  background: 'white',
  padding: 12,
  view: { stroke: null },
  axis: { labelFontSize: 12, titleFontSize: 13, titleFontWeight: 'normal', gridColor: '#e6e6e6', domainColor: '#444', tickColor: '#444', labelColor: '#222', titleColor: '#111' },
  legend: { labelFontSize: 12, titleFontSize: 12, titleFontWeight: 'normal', labelLimit: 260 },
  title: { fontSize: 14, fontWeight: 'bold', anchor: 'start', offset: 10 },
  header: { labelFontSize: 13, titleFontSize: 13 },
} as const;

export interface RenderedFigure {
  svg: string;
  png: Buffer;
  width: number;
  height: number;
}

/** Draws a Vega (not Vega-Lite) specification. */
export async function renderVega(spec: vega.Spec, pngScale = 2): Promise<RenderedFigure> {
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  await view.runAsync();
  const svg = await view.toSVG();
  view.finalize();
  return svgToFigure(svg, pngScale);
}

export async function renderVegaLite(spec: vegaLite.TopLevelSpec, pngScale = 2): Promise<RenderedFigure> {
  const withTheme = { ...spec, config: { ...THEME_CONFIG, ...(spec.config ?? {}) } } as vegaLite.TopLevelSpec;
  return renderVega(vegaLite.compile(withTheme).spec, pngScale);
}

export function svgToFigure(svg: string, pngScale = 2): RenderedFigure {
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: pngScale },
    background: 'white',
    font: { loadSystemFonts: FONT_FILES.length === 0, fontFiles: FONT_FILES, defaultFontFamily: FONT_FAMILY },
  });
  const image = resvg.render();
  return { svg, png: image.asPng(), width: image.width, height: image.height };
}
