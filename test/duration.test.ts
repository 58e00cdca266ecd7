import { expect } from 'chai';
import { formatDuration, parseDuration } from '../lib/duration.ts';

describe('duration', () => {
  const cases: Array<[string, number | undefined]> = [
    ['10', 10_000],
    ['0', 0],
    ['1.5', 1_500],
    ['250ms', 250],
    ['2s', 2_000],
    ['1m', 60_000],
    ['1m30s', 90_000],
    ['1h', 3_600_000],
    ['1.5m', 90_000],
    [' 10 ', 10_000],
    ['ten', undefined],
    ['-1', undefined],
    ['10x', undefined],
    ['s', undefined],
    ['', undefined],
    ['1m 30s', undefined],
  ];
  for (const [text, expected] of cases) {
    it(`parses ${JSON.stringify(text)} as ${expected ?? 'invalid'}`, () => {
      expect(parseDuration(text)).to.equal(expected);
    });
  }

  for (const [ms, text] of [[250, '250ms'], [10_000, '10s'], [90_000, '1m30s'], [86_400_000, '24h'], [1_500, '1500ms']] as const) {
    it(`formats ${ms} ms as ${text} and reads it back`, () => {
      expect(formatDuration(ms)).to.equal(text);
      expect(parseDuration(text)).to.equal(ms);
    });
  }
});
