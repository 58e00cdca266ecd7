#!/usr/bin/env node
// The values table of the chart's README, made from the chart itself, so the
// three places a value is described cannot drift apart:
//   values.yaml         the default, and a "# -- description" comment above the key
//   values.schema.json  the type and constraints, and the same description
//   README.md           the table between <!-- values:start --> and <!-- values:end -->
//
//   node scripts/helm-values-table.mjs           check: exit 1 and say what differs
//   node scripts/helm-values-table.mjs --write   rewrite the README's table
//
// A documented key (one with a "# --" comment) is one row; keys without a
// comment are groups and their children are rows. Needs js-yaml, which
// `npm ci` installs (it comes with mocha).
import console from 'node:console';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const chart = join(root, 'helm', 'keptn-distributor');
const readmePath = join(chart, 'README.md');
const START = '<!-- values:start -->';
const END = '<!-- values:end -->';

let yaml;
try {
  yaml = createRequire(join(root, 'package.json'))('js-yaml');
} catch {
  console.error('helm-values-table: js-yaml is missing; run npm ci first');
  process.exit(2);
}

const valuesText = readFileSync(join(chart, 'values.yaml'), 'utf8');
const values = yaml.load(valuesText);
const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8'));

/** "# -- text" comments by dotted key path, read by indentation (the file uses 2 spaces). */
function comments(text) {
  const found = new Map();
  let stack = [];
  let pending;
  for (const line of text.split('\n')) {
    const comment = /^\s*# -- (.*)$/.exec(line);
    if (comment) {
      pending = comment[1];
      continue;
    }
    if (/^\s*(#|$)/.test(line)) continue;
    const key = /^(\s*)([A-Za-z0-9_]+):/.exec(line);
    if (!key) continue;
    stack = [...stack.slice(0, key[1].length / 2), key[2]];
    if (pending !== undefined) found.set(stack.join('.'), pending);
    pending = undefined;
  }
  return found;
}

function resolve(node) {
  return node.$ref ? schema.definitions[node.$ref.replace('#/definitions/', '')] : node;
}

function typeOf(node) {
  if (node.$ref === '#/definitions/port') return 'port';
  if (node.$ref === '#/definitions/duration' || node.$ref === '#/definitions/positiveDuration') return 'duration';
  if (node.$ref === '#/definitions/stringMap') return 'map of string';
  if (node.anyOf) return 'quantity';
  const n = resolve(node);
  if (n.enum) return `string: ${n.enum.map((v) => (v === '' ? '""' : v)).join(', ')}`;
  if (n.type === 'array') return n.items?.type === 'string' ? 'list of string' : 'list';
  return Array.isArray(n.type) ? n.type.join(' or ') : n.type;
}

function valueAt(path) {
  return path.reduce((v, k) => (v === undefined || v === null ? undefined : v[k]), values);
}

/** Markdown table cell text: no pipes, no angle brackets read as HTML. */
function cell(text) {
  return text.replaceAll('|', '\\|').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

function show(value) {
  if (value === undefined) return '(none)';
  return '`' + JSON.stringify(value).replaceAll('|', '\\|') + '`';
}

const problems = [];
const rows = [];
const documented = comments(valuesText);
const seen = new Set();

(function walk(node, path) {
  const key = path.join('.');
  if (path.length > 0 && node.description !== undefined) {
    seen.add(key);
    const comment = documented.get(key);
    if (comment === undefined) problems.push(`values.yaml: ${key} has no "# -- " comment`);
    else if (comment !== node.description) problems.push(`values.schema.json: ${key}: description differs from the values.yaml comment`);
    if (valueAt(path) === undefined) problems.push(`values.yaml: ${key} is in the schema but has no default`);
    rows.push(`| \`${key}\` | ${typeOf(node)} | ${show(valueAt(path))} | ${cell(node.description)} |`);
    return;
  }
  if (!node.properties) {
    problems.push(`values.schema.json: ${key} has no description`);
    return;
  }
  if (node.additionalProperties !== false) problems.push(`values.schema.json: group ${key || '(root)'} should say additionalProperties: false`);
  for (const [name, child] of Object.entries(node.properties)) walk(child, [...path, name]);
})(schema, []);

for (const key of documented.keys()) {
  if (!seen.has(key)) problems.push(`values.schema.json: ${key} (documented in values.yaml) is not a described property`);
}

const table = ['| value | type | default | description |', '|---|---|---|---|', ...rows].join('\n');
const readme = readFileSync(readmePath, 'utf8');
const start = readme.indexOf(START);
const end = readme.indexOf(END);
if (start < 0 || end < start) {
  problems.push(`README.md: markers ${START} and ${END} not found`);
} else {
  const wanted = `${readme.slice(0, start + START.length)}\n${table}\n${readme.slice(end)}`;
  if (process.argv.includes('--write')) {
    if (wanted !== readme) writeFileSync(readmePath, wanted);
  } else if (wanted !== readme) {
    problems.push('README.md: the values table is out of date: run node scripts/helm-values-table.mjs --write');
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(`helm-values-table: ${p}`);
  process.exit(1);
}
console.log(`helm-values-table: ${rows.length} values documented alike in values.yaml, values.schema.json and README.md`);
