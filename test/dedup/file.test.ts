import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { DEDUP_FILE, FileDedupStore } from '../../lib/dedup/file.ts';
import { logSink, type LogSink } from '../helpers/log-sink.ts';

describe('dedup file store (STATE_DIR)', () => {
  let dir: string;
  let logs: LogSink;
  const open: FileDedupStore[] = [];
  const copies: string[] = [];

  async function openStore(): Promise<FileDedupStore> {
    const store = new FileDedupStore({ dir, logger: logs.logger });
    open.push(store);
    await store.open();
    return store;
  }

  const file = () => join(dir, DEDUP_FILE);
  const lines = async () => (await readFile(file(), 'utf8')).split('\n').filter((line) => line !== '');

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dedup-file-'));
    logs = logSink();
  });
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
    for (const copy of [dir, ...copies.splice(0)]) await rm(copy, { recursive: true, force: true });
  });

  it('persisted ids survive a restart; ids only added in memory do not', async () => {
    const first = await openStore();
    first.add('t1', 'queued-only');
    await first.persist('t1', 'sent-1');
    await first.persist('t2', 'sent-2');
    await first.close();

    const second = await openStore();
    expect(second.has('t1', 'sent-1')).to.equal(true);
    expect(second.has('t2', 'sent-2')).to.equal(true);
    expect(second.has('t1', 'queued-only'), 'never sent: dispatched again after a restart').to.equal(false);
    expect(second.size()).to.equal(2);
  });

  it('an id is on disk when persist resolves, without close or flush (a crash right after loses nothing)', async () => {
    const store = await openStore();
    await store.persist('t1', 'e1');
    expect(await lines()).to.include(JSON.stringify(['+', 't1', 'e1']));
    // What a restarted agent would load while this one still runs (as after a kill -9):
    const copy = await copyOf(dir);
    copies.push(copy);
    const reader = new FileDedupStore({ dir: copy, logger: logs.logger });
    open.push(reader);
    await reader.open();
    expect(reader.has('t1', 'e1')).to.equal(true);
  });

  it('releases and retains are written (at flush) and honoured after a restart', async () => {
    const first = await openStore();
    for (const id of ['a', 'b', 'c', 'd']) await first.persist('t1', id);
    first.release('t1', 'a');
    first.retain('t1', new Set(['c', 'd']));
    await first.flush();
    expect(await lines()).to.include.members([JSON.stringify(['-', 't1', 'a']), JSON.stringify(['-', 't1', 'b'])]);
    await first.close();
    const second = await openStore();
    expect(['a', 'b', 'c', 'd'].filter((id) => second.has('t1', id))).to.deep.equal(['c', 'd']);
  });

  it('concurrent persists share writes (group commit) and all resolve', async () => {
    const store = await openStore();
    await Promise.all(Array.from({ length: 500 }, (_, n) => store.persist('t1', `e${n}`)));
    const written = (await lines()).filter((line) => line.startsWith('["+"'));
    expect(written).to.have.length(500);
  });

  it('the log is compacted: its size stays proportional to the open ids', async () => {
    const store = await openStore();
    for (let round = 0; round < 5; round++) {
      const ids = Array.from({ length: 400 }, (_, n) => `r${round}-${n}`);
      await Promise.all(ids.map((id) => store.persist('t1', id)));
      store.retain('t1', new Set());
      await store.flush();
    }
    await store.persist('t1', 'last');
    // 2,000 ids added and dropped: without compaction that is 4,000 lines.
    expect((await lines()).length).to.be.below(2_100);
    await store.close();
    const reopened = await openStore();
    expect(reopened.size()).to.equal(1);
    expect(reopened.has('t1', 'last')).to.equal(true);
  });

  it('a missing file starts empty and creates STATE_DIR', async () => {
    copies.push(dir);
    dir = join(dir, 'nested', 'state');
    const store = await openStore();
    expect(store.size()).to.equal(0);
    expect((await stat(file())).isFile()).to.equal(true);
    expect(logs.entries().some((entry) => entry.message === 'no dedup record yet: starting empty')).to.equal(true);
  });

  for (const [name, content] of [
    ['not JSON at all', 'garbage\n'],
    ['an empty file', ''],
    ['a foreign JSON file', '{"ids":["a"]}\n'],
    ['a bad line in the middle', `${header()}\n["+","t","a"]\n{oops\n["+","t","b"]\n`],
    ['an unknown operation', `${header()}\n["*","t","a"]\n`],
  ] as const) {
    it(`a corrupt file (${name}) starts empty with a warning, and is kept aside`, async () => {
      await writeFile(file(), content);
      const store = await openStore();
      expect(store.size()).to.equal(0);
      const warning = logs.entries().find((entry) => entry.level === 'warn');
      expect(warning?.message).to.match(/corrupt: starting empty/);
      expect(await readFile(`${file()}.corrupt`, 'utf8')).to.equal(content);
      await store.persist('t', 'new');
      expect(store.has('t', 'new')).to.equal(true);
    });
  }

  it('a torn last line (a crash during an append) is ignored, the rest loaded', async () => {
    await writeFile(file(), `${header()}\n["+","t","a"]\n["+","t","b"]\n["+","t","c`);
    const store = await openStore();
    expect(store.size('t')).to.equal(2);
    expect(store.has('t', 'b')).to.equal(true);
    expect(logs.entries().some((entry) => /torn last line/.test(String(entry.message)))).to.equal(true);
  });

  it('an unusable STATE_DIR fails at open with a clear message', async () => {
    const blocker = join(dir, 'a-file');
    await writeFile(blocker, 'x');
    copies.push(dir);
    dir = blocker;
    const store = new FileDedupStore({ dir, logger: logs.logger });
    try {
      await store.open();
      expect.fail('open should reject');
    } catch (error) {
      expect((error as Error).message).to.match(/^STATE_DIR ".*a-file" cannot be used: /);
    }
  });

  it('a write failure rejects persist (nothing must be sent), is logged once, and the store recovers', async () => {
    const store = await openStore();
    // 1,001 ids then their removal pass the compaction threshold: the next write is a rewrite via
    // `dedup.log.tmp`, which is made impossible here by a directory of that name.
    await Promise.all(Array.from({ length: 1_001 }, (_, n) => store.persist('t', `e${n}`)));
    store.retain('t', new Set());
    await mkdir(`${file()}.tmp`);
    const results = await Promise.allSettled([store.persist('t', 'x'), store.persist('t', 'y')]);
    expect(results.map((result) => result.status)).to.deep.equal(['rejected', 'rejected']);
    expect(logs.entries().filter((entry) => entry.level === 'error')).to.have.length(1);

    await rm(`${file()}.tmp`, { recursive: true });
    store.release('t', 'x');
    store.release('t', 'y');
    await store.persist('t', 'z');
    expect(logs.entries().some((entry) => entry.message === 'the dedup record is written again')).to.equal(true);
    await store.close();
    const reopened = await openStore();
    expect(reopened.size()).to.equal(1);
    expect(reopened.has('t', 'z')).to.equal(true);
  });

  it('persist after close rejects', async () => {
    const store = await openStore();
    await store.close();
    try {
      await store.persist('t', 'late');
      expect.fail('persist should reject');
    } catch (error) {
      expect((error as Error).message).to.match(/not open/);
    }
  });
});

function header(): string {
  return JSON.stringify({ format: 'keptn-distributor dedup log', version: 1 });
}

/** A copy of the state directory, as a second process would find it on disk. */
async function copyOf(dir: string): Promise<string> {
  const copy = await mkdtemp(join(tmpdir(), 'dedup-copy-'));
  await writeFile(join(copy, DEDUP_FILE), await readFile(join(dir, DEDUP_FILE)));
  return copy;
}
