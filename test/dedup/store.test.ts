/**
 * The dedup record's contract, run against both stores. The reference's
 * cache tests (spec §14.8) adapted to the new semantics: ids are a set per
 * topic (no copies), `release` replaces `Remove`, `retain` replaces `Keep`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { FileDedupStore } from '../../lib/dedup/file.ts';
import { MemoryDedupStore } from '../../lib/dedup/memory.ts';
import type { DedupStore } from '../../lib/dedup/store.ts';
import { silentLogger } from '../../lib/log.ts';

const kinds: Array<{ name: string; create: (dir: string) => DedupStore }> = [
  { name: 'memory store', create: () => new MemoryDedupStore() },
  { name: 'file store', create: (dir) => new FileDedupStore({ dir, logger: silentLogger() }) },
];

for (const { name, create } of kinds) {
  describe(`dedup ${name}`, () => {
    let dir: string;
    let store: DedupStore;

    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'dedup-'));
      store = create(dir);
      await store.open();
    });
    afterEach(async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('TestAddEvent: ids are recorded per topic', () => {
      store.add('t1', 'e1');
      store.add('t1', 'e2');
      store.add('t2', 'e3');
      expect(store.has('t1', 'e1')).to.equal(true);
      expect(store.has('t1', 'e2')).to.equal(true);
      expect(store.has('t1', 'e3')).to.equal(false);
      expect(store.has('t2', 'e3')).to.equal(true);
    });

    it('TestAddEventTwice: an id added twice is recorded once', () => {
      store.add('t1', 'e1');
      store.add('t1', 'e2');
      store.add('t1', 'e2');
      expect(store.size('t1')).to.equal(2);
    });

    it('TestAddRemoveEvent: release forgets one id', () => {
      for (const id of ['e1', 'e2', 'e3']) store.add('t1', id);
      store.release('t1', 'e1');
      expect(store.size('t1')).to.equal(2);
      store.release('t1', 'e3');
      expect(store.size('t1')).to.equal(1);
      expect(store.has('t1', 'e2')).to.equal(true);
    });

    it('TestKeep: retain keeps the listed ids of one topic only', () => {
      store.add('t1', 'e1');
      store.add('t1', 'e2');
      for (const id of ['e3', 'e4', 'e5']) store.add('t2', id);
      expect(store.retain('t1', new Set(['e2']))).to.equal(1);
      expect(store.has('t1', 'e1')).to.equal(false);
      expect(store.has('t1', 'e2')).to.equal(true);
      expect(store.retain('t2', new Set(['e3', 'e5']))).to.equal(1);
      expect(['e3', 'e4', 'e5'].map((id) => store.has('t2', id))).to.deep.equal([true, false, true]);
    });

    it('retain with an id listed many times keeps one copy (the reference doubled it per poll, D3)', () => {
      store.add('t1', 'e1');
      for (let poll = 0; poll < 30; poll++) store.retain('t1', new Set(['e1', 'e1']));
      expect(store.size('t1')).to.equal(1);
      store.release('t1', 'e1');
      expect(store.has('t1', 'e1')).to.equal(false);
    });

    it('retain of a topic never seen, and release of an unknown id, change nothing', () => {
      store.add('t1', 'e1');
      expect(store.retain('other', new Set())).to.equal(0);
      store.release('t1', 'nope');
      store.release('other', 'e1');
      expect(store.size()).to.equal(1);
    });

    it('retainTopics drops the topics no longer polled', () => {
      store.add('old', 'e1');
      store.add('old', 'e2');
      store.add('kept', 'e3');
      expect(store.retainTopics(new Set(['kept']))).to.equal(2);
      expect(store.size()).to.equal(1);
      expect(store.has('kept', 'e3')).to.equal(true);
    });

    it('persist keeps the id recorded and resolves', async () => {
      await store.persist('t1', 'e1');
      expect(store.has('t1', 'e1')).to.equal(true);
      await store.flush();
    });

    it('close is idempotent', async () => {
      await store.close();
      await store.close();
    });
  });
}
