/** The figures' font: DejaVu Sans (Debian's fonts-dejavu-core); where it is absent, resvg falls back to system fonts. */
import { existsSync } from 'node:fs';

export const FONT_FAMILY = 'DejaVu Sans';

export const FONT_FILES = ['/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf', '/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf'].filter((path) =>
  existsSync(path),
);
