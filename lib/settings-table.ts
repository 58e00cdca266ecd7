/**
 * The README's configuration table, generated from the settings table.
 * `npm run docs` writes it between the README's `settings` markers; a test
 * fails when they differ.
 */
import { flagOf, settingRows } from './settings.ts';

export function settingsTable(): string {
  const lines = ['| variable | flag | default | meaning |', '|---|---|---|---|'];
  for (const [, row] of settingRows()) {
    const names = [`\`${row.env}\``, ...(row.aliases ?? []).map((alias) => `\`${alias}\` (alias)`)];
    const shown = row.shownDefault ?? (row.default === '' ? '""' : row.default);
    lines.push(`| ${names.join('<br>')} | \`${flagOf(row)}\` | ${shown === '""' ? '""' : `\`${shown}\``} | ${row.doc.replaceAll('|', '\\|')} |`);
  }
  return lines.join('\n');
}
