/** Writes the generated configuration table between the README's settings markers. */
import { readFileSync, writeFileSync } from 'node:fs';
import { settingsTable } from '../lib/settings-table.ts';

const README = new URL('../README.md', import.meta.url);
const START = '<!-- settings:start -->';
const END = '<!-- settings:end -->';

const readme = readFileSync(README, 'utf8');
const start = readme.indexOf(START);
const end = readme.indexOf(END);
if (start === -1 || end < start) throw new Error(`README.md lacks the ${START} … ${END} markers`);
writeFileSync(README, `${readme.slice(0, start + START.length)}\n${settingsTable()}\n${readme.slice(end)}`);
