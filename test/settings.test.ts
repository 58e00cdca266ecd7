import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import { Command, Option } from 'commander';
import { flagOf, settingRows } from '../lib/settings.ts';
import { settingsTable } from '../lib/settings-table.ts';

describe('settings table', () => {
  it('each key is the camelCase name commander gives its flag, so parsed flags map onto settings', () => {
    for (const [key, row] of settingRows()) {
      expect(new Option(`${flagOf(row)} <value>`).attributeName(), row.env).to.equal(key);
    }
  });

  it('each flag is -- plus the variable in kebab-case, except VERSION and NO_PROXY (whose flags would clash with --version and mean "not --proxy")', () => {
    const exceptions: Record<string, string> = { VERSION: '--integration-version', NO_PROXY: '--proxy-bypass' };
    for (const [, row] of settingRows()) {
      const expected = exceptions[row.env] ?? `--${row.env.toLowerCase().replaceAll('_', '-')}`;
      expect(flagOf(row)).to.equal(expected);
    }
  });

  it('each default parses', () => {
    for (const [, row] of settingRows()) expect(() => row.parse(row.default), row.env).not.to.throw();
  });

  it('the flags are all distinct and accepted by commander', () => {
    const program = new Command().exitOverride();
    for (const [, row] of settingRows()) program.addOption(new Option(`${flagOf(row)} <value>`));
    expect(new Set(settingRows().map(([, row]) => flagOf(row))).size).to.equal(settingRows().length);
  });

  it('the README’s configuration table is the generated one (run `npm run docs` after changing a setting)', () => {
    const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
    const start = readme.indexOf('<!-- settings:start -->');
    const end = readme.indexOf('<!-- settings:end -->');
    expect(start, 'settings markers in README.md').to.be.greaterThan(-1);
    expect(readme.slice(start + '<!-- settings:start -->'.length, end).trim()).to.equal(settingsTable().trim());
  });
});
