import { mkdtemp, open, readFile, rm, writeFile, appendFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { FileStore, JOURNAL_FILE } from '../../lib/outbox/file-store.ts';
import { DEAD_LETTER_FILE, FileDeadLetters, LogDeadLetters } from '../../lib/outbox/dead-letter.ts';
import { Outbox } from '../../lib/outbox/outbox.ts';
import { silentLogger } from '../../lib/log.ts';
import { logSink } from '../helpers/log-sink.ts';
import { FakeSink, keptnEvent, refused } from './fakes.ts';

const STARTED = 'sh.keptn.event.deployment.started';
const FINISHED = 'sh.keptn.event.deployment.finished';

function event(seq: number): { seq: number; acceptedAt: number; json: string } {
  return { seq, acceptedAt: 1_000 + seq, json: keptnEvent(`e${seq}`, STARTED, 'ctx').json };
}

describe('outbox file store (STATE_DIR journal)', () => {
  let dir: string;
  const stores: FileStore[] = [];
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'outbox-'));
  });
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  function store(compactAfter?: number, logger = silentLogger()): FileStore {
    const created = new FileStore({ dir, logger, ...(compactAfter !== undefined && { compactAfter }) });
    stores.push(created);
    return created;
  }

  const journal = (): Promise<string> => readFile(join(dir, JOURNAL_FILE), 'utf8');

  it('an appended event is on disk when append resolves, and comes back after a restart', async () => {
    const first = store();
    expect(await first.open()).to.deep.equal({ events: [], nextSeq: 1 });
    await first.append(event(1));
    await first.append(event(2));
    expect((await journal()).split('\n').filter(Boolean)).to.have.length(2);
    // No close: as after a crash.
    const second = store();
    const { events, nextSeq } = await second.open();
    expect(events).to.deep.equal([event(1), event(2)]);
    expect(nextSeq).to.equal(3);
  });

  it('a removed event does not come back; its seq is not reused', async () => {
    const first = store();
    await first.open();
    await Promise.all([first.append(event(1)), first.append(event(2)), first.append(event(3))]);
    first.remove(1);
    first.remove(3);
    await first.close();
    const { events, nextSeq } = await store().open();
    expect(events.map((e) => e.seq)).to.deep.equal([2]);
    expect(nextSeq).to.equal(4);
  });

  it('ignores a torn last line with a warning, and appends cleanly after it', async () => {
    const first = store();
    await first.open();
    await first.append(event(1));
    await first.close();
    await appendFile(join(dir, JOURNAL_FILE), '{"op":"add","seq":2,"at":5,"event":{"specv');
    const sink = logSink();
    const second = store(undefined, sink.logger);
    const { events } = await second.open();
    expect(events.map((e) => e.seq)).to.deep.equal([1]);
    expect(sink.entries()).to.have.length(1);
    expect(sink.entries()[0]).to.include({ level: 'warn', line: 2 });
    expect(sink.entries()[0]!.message).to.match(/torn last line/);
    await second.append(event(2));
    await second.close();
    expect((await store().open()).events.map((e) => e.seq)).to.deep.equal([1, 2]);
  });

  it('skips an unreadable line in the middle with a warning', async () => {
    await writeFile(join(dir, JOURNAL_FILE), [
      `{"op":"add","seq":1,"at":1,"event":${event(1).json}}`, 'garbage', `{"op":"add","seq":3,"at":3,"event":${event(3).json}}`, '',
    ].join('\n'));
    const sink = logSink();
    const { events } = await store(undefined, sink.logger).open();
    expect(events.map((e) => e.seq)).to.deep.equal([1, 3]);
    expect(sink.entries()[0]!.message).to.match(/unreadable line/);
  });

  it('compacts the journal when done lines dominate', async () => {
    const s = store(3);
    await s.open();
    await Promise.all([1, 2, 3, 4].map((seq) => s.append(event(seq))));
    for (const seq of [1, 2, 3]) s.remove(seq);
    // The next write happens after the compaction of the batch before it.
    await s.append(event(5));
    await s.close();
    const lines = (await journal()).split('\n').filter(Boolean).map((line) => JSON.parse(line) as { op: string; seq: number });
    expect(lines.map((line) => `${line.op}${line.seq}`)).to.deep.equal(['add4', 'add5']);
  });

  it('keeps every one of many concurrent appends (written in group commits)', async () => {
    const s = store();
    await s.open();
    await Promise.all(Array.from({ length: 200 }, (_, i) => s.append(event(i + 1))));
    expect((await journal()).split('\n').filter(Boolean)).to.have.length(200);
  });

  describe('a write that fails (disk full)', () => {
    let restore: (() => void) | undefined;
    afterEach(() => {
      restore?.();
      restore = undefined;
    });

    /** The next journal write puts the first 20 bytes on disk, then fails as a full disk does. */
    async function failNextWrite(): Promise<void> {
      const probe = await open(join(dir, 'probe'), 'w');
      const prototype = Object.getPrototypeOf(probe) as { write: FileHandle['write'] };
      await probe.close();
      const write = prototype.write;
      restore = () => { prototype.write = write; };
      prototype.write = async function (this: FileHandle, data: string) {
        restore?.();
        await write.call(this, data.slice(0, 20));
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      } as FileHandle['write'];
    }

    it('the events of the failed batch are refused, and the next ones are not glued to its fragment', async () => {
      const first = store();
      await first.open();
      await first.append(event(1));
      await failNextWrite();
      let refusal: unknown;
      await first.append(event(2)).catch((error: unknown) => { refusal = error; });
      expect((refusal as Error).message).to.match(/ENOSPC/);
      await first.append(event(3));
      const { events } = await store().open();
      expect(events.map((e) => e.seq)).to.deep.equal([1, 3]);
    });

    it('an event refused with 503 does not come back from the journal after a later compaction', async () => {
      const first = store(1);
      await first.open();
      await failNextWrite();
      await first.append(event(1)).catch(() => undefined);
      await first.append(event(2));
      first.remove(2);
      await first.close();
      expect((await store().open()).events).to.deep.equal([]);
    });

    it('a done line lost with the failed batch does not bring its event back', async () => {
      const first = store();
      await first.open();
      await first.append(event(1));
      await failNextWrite();
      first.remove(1);
      await first.close();
      expect((await store().open()).events).to.deep.equal([]);
    });
  });

  it('refuses an append after close', async () => {
    const s = store();
    await s.open();
    await s.close();
    let failed = false;
    await s.append(event(1)).catch(() => { failed = true; });
    expect(failed).to.equal(true);
  });

  it('with the outbox: undelivered events survive a restart and are delivered afterwards, in order', async () => {
    const downSink = new FakeSink();
    downSink.answer = () => refused();
    const before = new Outbox({
      sink: downSink, store: store(), deadLetters: new LogDeadLetters(silentLogger()), logger: silentLogger(),
      maxAgeMs: 3_600_000, canCheckArrival: true,
    });
    await before.start();
    for (const [id, type] of [['s1', STARTED], ['f1', FINISHED]] as const) {
      const { meta, json } = keptnEvent(id, type, 'ctx');
      expect(await before.add(meta, json)).to.deep.equal({ ok: true });
    }
    expect(await before.drain(AbortSignal.abort())).to.equal(2);

    const upSink = new FakeSink();
    const after = new Outbox({
      sink: upSink, store: store(), deadLetters: new LogDeadLetters(silentLogger()), logger: silentLogger(),
      maxAgeMs: 3_600_000, canCheckArrival: true,
    });
    await after.start();
    await after.idle();
    // The .started is checked first (its send may have been under way), then both go out in order.
    expect(upSink.queries).to.have.length(1);
    expect(upSink.ids()).to.deep.equal(['s1', 'f1']);
    expect(await after.drain(AbortSignal.timeout(1_000))).to.equal(0);
    expect((await store().open()).events).to.deep.equal([]);
  });

  describe('dead letters', () => {
    it('are appended to dead-letter.jsonl with the reason and the whole event', async () => {
      const letters = new FileDeadLetters(dir);
      const { json } = keptnEvent('x', STARTED, 'ctx');
      await Promise.all([
        letters.write({ json, acceptedAt: 0, reason: 'refused by the control plane: 422: data in body is required', status: 422 }),
        letters.write({ json, acceptedAt: 0, reason: 'not delivered within the age cap: 503' }),
      ]);
      const lines = (await readFile(join(dir, DEAD_LETTER_FILE), 'utf8')).split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines).to.have.length(2);
      expect(lines[0]).to.include({ status: 422, acceptedAt: '1970-01-01T00:00:00.000Z' });
      expect(lines[0]!.event).to.deep.equal(JSON.parse(json));
      expect(lines[1]!.reason).to.equal('not delivered within the age cap: 503');
    });

    it('without STATE_DIR, the whole event is logged at error level', async () => {
      const sink = logSink();
      const { json } = keptnEvent('x', STARTED, 'ctx');
      await new LogDeadLetters(sink.logger).write({ json, acceptedAt: 0, reason: 'r' });
      expect(sink.entries()[0]).to.include({ level: 'error', reason: 'r' });
      expect(sink.entries()[0]!.event).to.deep.equal(JSON.parse(json));
    });
  });
});
