import { expect } from 'chai';
import { Outbox, type OutboxOptions } from '../../lib/outbox/outbox.ts';
import { MemoryStore } from '../../lib/outbox/memory-store.ts';
import type { DeadLetter, DeadLetters } from '../../lib/outbox/dead-letter.ts';
import type { OutboxStore, StoredEvent } from '../../lib/outbox/store.ts';
import { Readiness } from '../../lib/readiness.ts';
import { createMetrics, type Metrics } from '../../lib/metrics.ts';
import { logSink, type LogSink } from '../helpers/log-sink.ts';
import { FakeClock, FakeSink, keptnEvent, noAnswer, refused, settle, status } from './fakes.ts';

const STARTED = 'sh.keptn.event.deployment.started';
const FINISHED = 'sh.keptn.event.deployment.finished';

class Letters implements DeadLetters {
  readonly location = 'test';
  readonly letters: DeadLetter[] = [];
  write(letter: DeadLetter): Promise<void> {
    this.letters.push(letter);
    return Promise.resolve();
  }
}

/** A memory store that hands back events "left by a previous run". */
class LeftoverStore extends MemoryStore {
  readonly #events: StoredEvent[];
  constructor(events: StoredEvent[]) {
    super();
    this.#events = events;
  }
  override open(): Promise<{ events: readonly StoredEvent[]; nextSeq: number }> {
    return Promise.resolve({ events: this.#events, nextSeq: this.#events.length + 1 });
  }
}

interface Harness {
  outbox: Outbox;
  sink: FakeSink;
  clock: FakeClock;
  logs: LogSink;
  metrics: Metrics;
  readiness: Readiness;
  letters: Letters;
  add(id: string, type: string, context?: string, extra?: Record<string, unknown>): Promise<void>;
}

async function harness(options: Partial<OutboxOptions> & { store?: OutboxStore; sink?: FakeSink } = {}): Promise<Harness> {
  const sink = options.sink ?? new FakeSink();
  const clock = new FakeClock();
  const logs = logSink();
  const metrics = createMetrics({ defaultMetrics: false });
  const readiness = new Readiness();
  const letters = new Letters();
  const outbox = new Outbox({
    sink, store: new MemoryStore(), deadLetters: letters, logger: logs.logger, metrics, readiness,
    maxAgeMs: 24 * 3600_000, canCheckArrival: true, clock, random: () => 0, ...options,
  });
  await outbox.start();
  return {
    outbox, sink, clock, logs, metrics, readiness, letters,
    add: async (id, type, context, extra) => {
      const { meta, json } = keptnEvent(id, type, context, extra);
      const result = await outbox.add(meta, json);
      expect(result).to.deep.equal({ ok: true });
    },
  };
}

async function counter(metrics: Metrics, outcome: string): Promise<number> {
  const values = (await metrics.relays.get()).values;
  return values.find((value) => value.labels.outcome === outcome)?.value ?? 0;
}

/** A promise the test resolves or rejects later, standing for a slow answer. */
function later(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

describe('outbox', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.outbox.drain(AbortSignal.abort());
    h = undefined;
  });

  describe('order and concurrency', () => {
    it('keeps order per Keptn context: a .finished waits for its .started, other contexts go on', async () => {
      h = await harness();
      const slow = later();
      h.sink.answer = (json) => (json.includes('"a-started"') ? slow.promise : 'ok');
      await h.add('a-started', STARTED, 'ctx-a');
      await h.add('a-finished', FINISHED, 'ctx-a');
      await h.add('b-started', STARTED, 'ctx-b');
      await settle();
      expect(h.sink.ids()).to.deep.equal(['a-started', 'b-started']);
      slow.resolve();
      await settle();
      expect(h.sink.ids()).to.deep.equal(['a-started', 'b-started', 'a-finished']);
      expect(h.outbox.depth).to.equal(0);
      expect(await counter(h.metrics, 'delivered')).to.equal(3);
    });

    it('sends at most `concurrency` contexts at once', async () => {
      h = await harness({ concurrency: 2 });
      const slow = later();
      h.sink.answer = () => slow.promise;
      for (const id of ['1', '2', '3', '4']) await h.add(id, STARTED, `ctx-${id}`);
      await settle();
      expect(h.sink.posted).to.have.length(2);
      slow.resolve();
      await settle();
      expect(h.sink.ids()).to.deep.equal(['1', '2', '3', '4']);
    });

    it('events without shkeptncontext do not wait for each other', async () => {
      h = await harness();
      const slow = later();
      h.sink.answer = (json) => (json.includes('"first"') ? slow.promise : 'ok');
      await h.add('first', 'sh.keptn.event.x.finished', undefined);
      await h.add('second', 'sh.keptn.event.x.finished', undefined);
      await settle();
      expect(h.sink.ids()).to.deep.equal(['first', 'second']);
      expect(h.outbox.depth).to.equal(1);
      slow.resolve();
      await h.outbox.idle();
    });

    it('sends the original JSON text', async () => {
      h = await harness();
      const { meta, json } = keptnEvent('x', STARTED, 'ctx', { custom: 'kept' });
      await h.outbox.add(meta, json);
      await settle();
      expect(h.sink.posted).to.deep.equal([json]);
    });
  });

  describe('retries', () => {
    it('retries connection errors and 5xx with growing backoff until delivered, exactly once', async () => {
      h = await harness();
      h.sink.answers = [refused(), status(503), status(502), 'ok'];
      await h.add('e1', STARTED, 'ctx');
      await settle();
      expect(h.sink.posted).to.have.length(1);
      // random() = 0: half of 100 ms, then of 200 ms, then of 400 ms.
      expect(h.clock.pending()).to.deep.equal([50, 50]);
      await h.clock.advance(50);
      expect(h.sink.posted).to.have.length(2);
      expect(h.clock.pending()).to.deep.equal([100, 100]);
      await h.clock.advance(100);
      await h.clock.advance(200);
      expect(h.sink.ids()).to.deep.equal(['e1', 'e1', 'e1', 'e1']);
      expect(h.outbox.depth).to.equal(0);
      expect(await counter(h.metrics, 'delivered')).to.equal(1);
      expect(await counter(h.metrics, 'retried')).to.equal(3);
    });

    it('caps the backoff', async () => {
      h = await harness({ backoff: { initialMs: 100, maxMs: 400 }, random: () => 1 });
      h.sink.answer = () => status(503);
      await h.add('e1', STARTED, 'ctx');
      for (let i = 0; i < 6; i++) await h.clock.advance(400);
      expect(h.sink.posted.length).to.be.greaterThan(3);
      expect(Math.max(...h.clock.requested)).to.equal(400);
    });

    it('honours Retry-After', async () => {
      h = await harness();
      h.sink.answers = [status(429, 'too many requests', 3_000)];
      await h.add('e1', STARTED, 'ctx');
      await h.clock.advance(2_999);
      expect(h.sink.posted).to.have.length(1);
      await h.clock.advance(1);
      expect(h.sink.posted).to.have.length(2);
    });

    it('while the control plane fails, only one request at a time probes it', async () => {
      h = await harness();
      let down = true;
      const first = later();
      h.sink.answer = () => (h!.sink.posted.length <= 3 ? first.promise : down ? refused() : 'ok');
      for (const id of ['1', '2', '3']) await h.add(id, STARTED, `ctx-${id}`);
      await settle();
      expect(h.sink.posted).to.have.length(3);
      first.reject(refused());
      await settle();
      // The gate and the three lanes wait; after it, one probe and no more.
      await h.clock.advance(50);
      expect(h.sink.posted).to.have.length(4);
      await h.clock.advance(5);
      expect(h.sink.posted).to.have.length(4);
      down = false;
      await h.clock.advance(200);
      await h.outbox.idle();
      expect(new Set(h.sink.ids().slice(4))).to.have.length(h.sink.posted.length - 4);
      expect(await counter(h.metrics, 'delivered')).to.equal(3);
      const lines = h.logs.entries().map((entry) => entry.message);
      expect(lines.filter((line) => String(line).startsWith('cannot deliver relayed events'))).to.have.length(1);
      expect(lines).to.include('the control plane takes relayed events again');
    });

    it('wake() tries the waiting events now, not after their backoff', async () => {
      h = await harness();
      let down = true;
      h.sink.answer = () => (down ? refused() : 'ok');
      for (const id of ['1', '2', '3']) await h.add(id, STARTED, `ctx-${id}`);
      // Fail until every wait (the gate's and the lanes') is over a second.
      for (let i = 0; i < 100 && Math.min(...h.clock.pending()) <= 1_000; i++) await h.clock.advance(Math.min(...h.clock.pending()));
      const tried = h.sink.posted.length;
      expect(Math.min(...h.clock.pending())).to.be.above(1_000);
      down = false;
      h.outbox.wake();
      await settle();
      // No time has passed: each event went out once more, and was delivered.
      expect(h.outbox.depth).to.equal(0);
      expect(h.sink.posted).to.have.length(tried + 3);
      expect(await counter(h.metrics, 'delivered')).to.equal(3);
      expect(h.clock.pending()).to.deep.equal([]);
    });

    it('one event that keeps failing does not stop the others', async () => {
      h = await harness();
      h.sink.answer = (json) => (json.includes('"bad"') ? status(500) : 'ok');
      await h.add('bad', STARTED, 'ctx-bad');
      await settle();
      for (const id of ['1', '2', '3']) await h.add(id, STARTED, `ctx-${id}`);
      await h.clock.advance(1_000);
      expect(h.sink.ids().filter((id) => id !== 'bad')).to.deep.equal(['1', '2', '3']);
      expect(h.outbox.depth).to.equal(1);
    });

    it('dead-letters an event still failing after the age cap', async () => {
      h = await harness({ maxAgeMs: 60_000, backoff: { initialMs: 1_000, maxMs: 10_000 } });
      h.sink.answer = () => status(503, '503: Service Unavailable');
      await h.add('old', STARTED, 'ctx');
      await h.add('next', FINISHED, 'ctx');
      await h.clock.advance(59_000);
      expect(h.letters.letters).to.have.length(0);
      await h.clock.advance(20_000);
      expect(h.letters.letters).to.have.length(2);
      expect(h.letters.letters[0]!.reason).to.match(/age cap: 503: Service Unavailable/);
      expect(JSON.parse(h.letters.letters[0]!.json)).to.include({ id: 'old' });
      expect(await counter(h.metrics, 'dead-lettered')).to.equal(2);
      expect(h.outbox.depth).to.equal(0);
      expect(h.logs.entries().some((entry) => entry.level === 'error' && String(entry.message).includes('age cap'))).to.equal(true);
    });
  });

  describe('a rejected token (401/403)', () => {
    it('holds the events, says so once in the log and in /ready, counts it, and recovers after a success', async () => {
      h = await harness();
      let token = 'wrong';
      h.sink.answer = () => (token === 'wrong' ? status(401, '401: invalid token') : 'ok');
      await h.add('e1', STARTED, 'ctx-1');
      await h.add('e2', STARTED, 'ctx-2');
      for (let i = 0; i < 5; i++) await h.clock.advance(1_000);
      expect(h.readiness.report()).to.deep.equal({ ready: false, notReady: ['outbox: the control plane rejects the API token (401: invalid token)'] });
      const errors = h.logs.entries().filter((entry) => entry.level === 'error');
      expect(errors).to.have.length(1);
      expect(errors[0]!.message).to.match(/rejects the API token/);
      expect(await counter(h.metrics, 'token-rejected')).to.be.greaterThan(2);
      expect(h.outbox.depth).to.equal(2);
      expect(h.letters.letters).to.have.length(0);

      token = 'fixed';
      await h.clock.advance(60_000);
      await h.outbox.idle();
      expect(h.readiness.report().ready).to.equal(true);
      expect(h.logs.entries().map((entry) => entry.message)).to.include('the control plane accepts the API token again: delivering relayed events');
    });

    it('a 500 from the gateway in between (its rate limit) keeps the token condition until a success', async () => {
      h = await harness();
      h.sink.answers = [status(401), status(500, '500 Internal Server Error'), status(403)];
      await h.add('e1', STARTED, 'ctx');
      await h.clock.advance(10_000);
      expect(h.readiness.report().ready).to.equal(true);
      expect(h.sink.posted).to.have.length(4);
      expect(h.logs.entries().filter((entry) => entry.level === 'error')).to.have.length(1);
    });
  });

  describe('final rejections', () => {
    for (const code of [400, 404, 413, 415, 422]) {
      it(`${code} is final: logged with Keptn's message, counted, dead-lettered, and the lane goes on`, async () => {
        h = await harness();
        h.sink.answers = [status(code, `${code}: data in body is required`)];
        await h.add('bad', STARTED, 'ctx');
        await h.add('good', FINISHED, 'ctx');
        await h.outbox.idle();
        expect(h.sink.ids()).to.deep.equal(['bad', 'good']);
        expect(await counter(h.metrics, 'failed')).to.equal(1);
        expect(h.letters.letters.map((letter) => letter.status)).to.deep.equal([code]);
        const error = h.logs.entries().find((entry) => entry.level === 'error')!;
        expect(error).to.include({ status: code, reason: `${code}: data in body is required`, eventId: 'bad', keptnContext: 'ctx' });
      });
    }
  });

  describe('an unanswered .started is checked before it is sent again', () => {
    const stored = (source = 'helm-service', triggeredid = 'triggered-ctx'): unknown[] =>
      [{ id: 'new-id-by-api-service', type: STARTED, source, triggeredid, shkeptncontext: 'ctx' }];

    it('not re-sent when the datastore has it (matched on triggeredid and source, not id)', async () => {
      h = await harness();
      h.sink.answers = [noAnswer()];
      await h.add('s1', STARTED, 'ctx');
      await h.add('f1', FINISHED, 'ctx');
      h.sink.datastore = stored();
      await h.clock.advance(4_999);
      expect(h.sink.queries).to.have.length(0);
      await h.clock.advance(1);
      expect(h.sink.queries).to.deep.equal([{ keptnContext: 'ctx', type: STARTED }]);
      await h.outbox.idle();
      expect(h.sink.ids()).to.deep.equal(['s1', 'f1']);
      expect(h.logs.entries().map((entry) => entry.message)).to.include('an earlier, unanswered send of this .started event did arrive: not sending it again');
    });

    for (const [what, datastore] of [['another source', stored('other-service')], ['another triggeredid', stored('helm-service', 'other')], ['nothing', []]] as const) {
      it(`re-sent when the datastore holds ${what}`, async () => {
        h = await harness();
        h.sink.answers = [noAnswer()];
        h.sink.datastore = [...datastore];
        await h.add('s1', STARTED, 'ctx');
        await h.clock.advance(5_000);
        await h.outbox.idle();
        expect(h.sink.ids()).to.deep.equal(['s1', 's1']);
      });
    }

    it('retried later when the datastore cannot answer now', async () => {
      h = await harness();
      h.sink.answers = [noAnswer()];
      h.sink.datastore = status(503);
      await h.add('s1', STARTED, 'ctx');
      await h.clock.advance(5_000);
      expect(h.sink.queries).to.have.length(1);
      expect(h.sink.posted).to.have.length(1);
      h.sink.datastore = stored();
      await h.clock.advance(10_000);
      await h.outbox.idle();
      expect(h.sink.posted).to.have.length(1);
    });

    it('sent, with a warning, when the datastore has no such route', async () => {
      h = await harness();
      h.sink.answers = [noAnswer()];
      h.sink.datastore = status(404);
      await h.add('s1', STARTED, 'ctx');
      await h.clock.advance(5_000);
      await h.outbox.idle();
      expect(h.sink.posted).to.have.length(2);
      expect(h.logs.entries().some((entry) => entry.level === 'warn' && String(entry.message).startsWith('cannot ask the control plane'))).to.equal(true);
    });

    it('sent, with a warning, without KEPTN_API_ENDPOINT to ask', async () => {
      h = await harness({ canCheckArrival: false });
      h.sink.answers = [noAnswer()];
      await h.add('s1', STARTED, 'ctx');
      await h.clock.advance(5_000);
      await h.outbox.idle();
      expect(h.sink.queries).to.have.length(0);
      expect(h.sink.posted).to.have.length(2);
    });

    it('an unanswered .finished is re-sent without asking (a duplicate is refused harmlessly)', async () => {
      h = await harness();
      h.sink.answers = [noAnswer()];
      await h.add('f1', FINISHED, 'ctx');
      await h.clock.advance(100);
      await h.outbox.idle();
      expect(h.sink.queries).to.have.length(0);
      expect(h.sink.ids()).to.deep.equal(['f1', 'f1']);
    });

    it('a .started left by a previous run is checked first (its send may have been under way)', async () => {
      const { json } = keptnEvent('s1', STARTED, 'ctx');
      const sink = new FakeSink();
      sink.datastore = stored();
      h = await harness({ sink, store: new LeftoverStore([{ seq: 1, acceptedAt: 0, json }]) });
      await h.outbox.idle();
      expect(h.sink.queries).to.have.length(1);
      expect(h.sink.posted).to.have.length(0);
    });
  });

  describe('bounds', () => {
    it('answers "full" past maxEvents, with a Retry-After, and counts the refusal', async () => {
      h = await harness({ maxEvents: 2 });
      h.sink.answer = () => refused();
      await h.add('1', STARTED, 'a');
      await h.add('2', STARTED, 'b');
      const { meta, json } = keptnEvent('3', STARTED, 'c');
      const result = await h.outbox.add(meta, json);
      expect(result).to.include({ ok: false, reason: 'full', retryAfterMs: 5_000 });
      expect(await counter(h.metrics, 'refused')).to.equal(1);
      expect(h.logs.entries().filter((entry) => String(entry.message).startsWith('the outbox is full'))).to.have.length(1);
    });

    it('answers "full" past maxBytes', async () => {
      const { meta, json } = keptnEvent('1', STARTED, 'a');
      h = await harness({ maxBytes: json.length + 10 });
      h.sink.answer = () => refused();
      expect((await h.outbox.add(meta, json)).ok).to.equal(true);
      expect((await h.outbox.add(meta, json)).ok).to.equal(false);
    });

    it('sets the depth gauge', async () => {
      h = await harness();
      h.sink.answer = () => refused();
      await h.add('1', STARTED, 'a');
      await h.add('2', STARTED, 'a');
      expect((await h.metrics.outboxDepth.get()).values[0]!.value).to.equal(2);
    });
  });

  describe('drain (shutdown)', () => {
    it('refuses new events and delivers what is queued', async () => {
      h = await harness();
      h.sink.answers = [refused()];
      await h.add('1', STARTED, 'a');
      const drained = h.outbox.drain(AbortSignal.timeout(5_000));
      const { meta, json } = keptnEvent('2', STARTED, 'b');
      expect(await h.outbox.add(meta, json)).to.include({ ok: false, reason: 'closed' });
      await h.clock.advance(100);
      expect(await drained).to.equal(0);
      expect(h.sink.ids()).to.deep.equal(['1', '1']);
    });

    it('at the deadline aborts what is in flight and, in memory, logs the loss', async () => {
      h = await harness();
      h.sink.answer = (_json, signal) => new Promise<void>((_resolve, reject) => {
        signal?.addEventListener('abort', () => reject(noAnswer()), { once: true });
      });
      await h.add('1', STARTED, 'a');
      await h.add('2', FINISHED, 'a');
      await settle();
      const deadline = new AbortController();
      const drained = h.outbox.drain(deadline.signal);
      await settle();
      deadline.abort();
      expect(await drained).to.equal(2);
      const lost = h.logs.entries().find((entry) => entry.level === 'error')!;
      expect(lost).to.include({ events: 2 });
      expect(lost.message).to.match(/lost: without STATE_DIR/);
    });
  });
});
