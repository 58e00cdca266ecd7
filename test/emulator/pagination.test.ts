import { expect } from 'chai';
import { paginate, parseOffset, parsePageSize } from '../../lib/emulator/pagination.ts';

const items = (count: number): number[] => Array.from({ length: count }, (_, index) => index);

describe('emulator: pagination (shipyard-controller common/pagination.go)', () => {
  const cases: Array<{ name: string; total: number; pageSize: number; offset: number; bug: boolean; items: number[]; next: string }> = [
    { name: 'first of three pages', total: 45, pageSize: 20, offset: 0, bug: false, items: items(20), next: '20' },
    { name: 'middle page', total: 45, pageSize: 20, offset: 20, bug: false, items: items(40).slice(20), next: '40' },
    { name: 'last, shorter page', total: 45, pageSize: 20, offset: 40, bug: false, items: [40, 41, 42, 43, 44], next: '0' },
    { name: 'exactly one full page', total: 20, pageSize: 20, offset: 0, bug: false, items: items(20), next: '0' },
    { name: 'empty list', total: 0, pageSize: 20, offset: 0, bug: false, items: [], next: '0' },
    { name: 'past the end', total: 3, pageSize: 20, offset: 10, bug: false, items: [], next: '0' },
    { name: 'bug: first page is right', total: 21, pageSize: 20, offset: 0, bug: true, items: items(20), next: '20' },
    { name: 'bug: second page of 21 repeats item 0 (spec §4.8.3)', total: 21, pageSize: 20, offset: 20, bug: true, items: [0], next: '0' },
    { name: 'bug: third page of 45 repeats items 0–4', total: 45, pageSize: 20, offset: 40, bug: true, items: [0, 1, 2, 3, 4], next: '0' },
  ];
  for (const { name, total, pageSize, offset, bug, items: expected, next } of cases) {
    it(name, () => {
      const page = paginate(items(total), pageSize, offset, { bug });
      expect(page.items).to.deep.equal(expected);
      expect(page.nextPageKey).to.equal(next);
    });
  }

  const offsets: Array<[string | null, number]> = [[null, 0], ['', 0], ['20', 20], ['+20', 20], ['-5', -5], ['abc', 0], ['20abc', 0], ['2.5', 0]];
  for (const [key, offset] of offsets) {
    it(`reads nextPageKey ${JSON.stringify(key)} as offset ${offset}`, () => {
      expect(parseOffset(key)).to.equal(offset);
    });
  }

  const sizes: Array<[string | null, number | undefined]> = [[null, 20], ['', 20], ['1', 1], ['50', 50], ['0', undefined], ['-1', undefined], ['abc', undefined], ['1e3', undefined]];
  for (const [value, size] of sizes) {
    it(`reads pageSize ${JSON.stringify(value)} as ${size}`, () => {
      expect(parsePageSize(value, 20)).to.equal(size);
    });
  }
});
