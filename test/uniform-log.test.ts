import { expect } from 'chai';
import nock from 'nock';
import type { KeptnCloudEvent } from '../lib/cloudevents.ts';
import { loadConfig } from '../lib/config.ts';
import { KeptnApi, keptnApiOptions } from '../lib/keptn-api.ts';
import { createMetrics, type Metrics } from '../lib/metrics.ts';
import {
  MAX_FLUSH_BACKOFF_MS, MAX_LOG_MESSAGE_CHARS, UniformLog, extractLogEntry, flushRetryDelay, type LogEntry, type PendingLogEntry, type UniformLogOptions,
} from '../lib/uniform-log.ts';
import { logSink, type LogSink } from './helpers/log-sink.ts';
import { until } from './helpers/until.ts';
import { useNock } from './helpers/nock-scope.ts';

const ENDPOINT = 'https://keptn.example.com';
const TOKEN = 'log-token';
const LOG_PATH = '/api/controlPlane/v1/log';
const NOW = new Date('2021-07-26T10:15:30.123Z');

function event(type: string, data: unknown, extra: Record<string, unknown> = {}): KeptnCloudEvent {
  return {
    specversion: '1.0', id: `id-${type}`, source: 'my-service', type, data,
    shkeptncontext: 'my-context', triggeredid: 'my-triggered-id', ...extra,
  };
}

const logError = (data: unknown, extra: Record<string, unknown> = {}): KeptnCloudEvent => event('sh.keptn.log.error', data, extra);
const deploymentFinished = (data: unknown, extra: Record<string, unknown> = {}): KeptnCloudEvent =>
  event('sh.keptn.event.deployment.finished', data, extra);

interface Fixture {
  log: UniformLog;
  logs: LogSink;
  metrics: Metrics;
}

function fixture(options: Partial<Omit<UniformLogOptions, 'api' | 'logger' | 'metrics'>> = {}): Fixture {
  const config = loadConfig({ env: { KEPTN_API_ENDPOINT: `${ENDPOINT}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: 'sh.keptn.event.deployment.triggered' } });
  const logs = logSink({ secrets: [TOKEN] });
  const metrics = createMetrics({ defaultMetrics: false });
  const log = new UniformLog({
    api: new KeptnApi(keptnApiOptions(config, 2_000)),
    integrationId: () => 'my-id',
    logger: logs.logger,
    metrics,
    flushIntervalMs: 60_000,
    random: () => 1,
    ...options,
  });
  return { log, logs, metrics };
}

/** Expects one POST of the log API and hands back its entries. */
function expectLogPost(status = 200, answer: object | string = {}): { entries: () => LogEntry[]; scope: nock.Scope } {
  let body: { logs: LogEntry[] } | undefined;
  const scope = nock(ENDPOINT, { reqheaders: { 'x-token': TOKEN, 'content-type': 'application/json' } })
    .post(LOG_PATH, (received: { logs: LogEntry[] }) => { body = received; return true; })
    .reply(status, answer);
  return { entries: () => body?.logs ?? [], scope };
}

async function counter(metrics: Metrics, outcome: string): Promise<number> {
  return (await metrics.logEntries.get()).values.find((value) => value.labels.outcome === outcome)?.value ?? 0;
}

async function pendingGauge(metrics: Metrics): Promise<number | undefined> {
  return (await metrics.logEntriesPending.get()).values[0]?.value;
}

describe('uniform-log', () => {
  let running: UniformLog | undefined;

  useNock();
  afterEach(async () => {
    await running?.stop(AbortSignal.timeout(1_000));
    running = undefined;
    const done = nock.isDone();
    const pending = nock.pendingMocks();
    nock.cleanAll();
    expect(done, `requests not made: ${pending.join(', ')}`).to.equal(true);
  });

  describe('reference test cases (spec §14.3)', () => {
    it('TestEventUniformLog_Start: log.error and failed .finished become entries, other events none, undecodable data an error', async () => {
      const { log, logs } = fixture();
      log.observe(event('random-event', {}));
      expect(log.pending).to.equal(0);
      log.observe(logError({ message: 'my-message', task: 'my-task' }, { time: NOW.toISOString() }));
      log.observe(logError('invalid'));
      log.observe(deploymentFinished({ status: 'errored', message: 'my-message' }, { time: NOW.toISOString() }));
      // The reference prepared this case and never sent it (D27): a succeeded .finished makes no entry.
      log.observe(deploymentFinished({ status: 'succeeded', result: 'pass', message: 'my-message' }));
      log.observe(deploymentFinished('invalid'));
      expect(log.pending).to.equal(2);
      expect(logs.entries().filter((entry) => entry.level === 'warn').map((entry) => entry.message)).to.deep.equal([
        'no error log entry: the data of a sh.keptn.log.error event must be a JSON object',
        'no error log entry: the data of a .finished event must be a JSON object',
      ]);
      const post = expectLogPost();
      expect(await log.flush()).to.equal(true);
      expect(post.entries()).to.deep.equal([
        { integrationid: 'my-id', message: 'my-message', time: NOW.toISOString(), shkeptncontext: 'my-context', task: 'my-task', triggeredid: 'my-triggered-id' },
        { integrationid: 'my-id', message: 'my-message', time: NOW.toISOString(), shkeptncontext: 'my-context', task: 'deployment', triggeredid: 'my-triggered-id' },
      ]);
    });
  });

  describe('which events make an entry (spec §8.2)', () => {
    const cases: Array<[string, KeptnCloudEvent, Partial<PendingLogEntry> | 'none']> = [
      ['a .finished with result fail', deploymentFinished({ status: 'succeeded', result: 'fail', message: 'tests failed' }), { task: 'deployment', message: 'tests failed' }],
      ['a .finished with status errored', event('sh.keptn.event.test.finished', { status: 'errored', result: 'pass' }), { task: 'test', message: '' }],
      ['a sequence .finished: no task', event('sh.keptn.event.dev.delivery.finished', { status: 'errored', message: 'm' }), { task: '' }],
      ['a .finished with result warning', deploymentFinished({ status: 'succeeded', result: 'warning' }), 'none'],
      ['status and result are case-sensitive, as the reference', deploymentFinished({ status: 'Errored', result: 'FAIL' }), 'none'],
      ['a .started', event('sh.keptn.event.deployment.started', { status: 'errored' }), 'none'],
      ['a .triggered', event('sh.keptn.event.deployment.triggered', { result: 'fail' }), 'none'],
      ['log.error keeps its own integrationid', logError({ message: 'm', task: 't', integrationid: 'their-id' }), { integrationid: 'their-id', task: 't' }],
      ['log.error with an empty integrationid takes the agent’s', logError({ message: 'm', task: 't', integrationid: '' }), { integrationid: undefined }],
      ['missing extensions are empty strings', logError({ message: 'm' }, { shkeptncontext: undefined, triggeredid: undefined }), { shkeptncontext: '', triggeredid: '', task: '' }],
      ['a time is the event’s', logError({}, { time: '2020-01-02T03:04:05Z' }), { time: '2020-01-02T03:04:05Z' }],
      ['no time: now, not Go’s zero time', logError({}), { time: NOW.toISOString() }],
      ['a message that is not a string is written as JSON', logError({ message: { code: 7 } }), { message: '{"code":7}' }],
    ];
    for (const [name, input, expected] of cases) {
      it(name, () => {
        const extraction = extractLogEntry(input, NOW);
        if (expected === 'none') {
          expect(extraction).to.deep.equal({ kind: 'none' });
          return;
        }
        expect(extraction.kind).to.equal('entry');
        if (extraction.kind === 'entry') expect(extraction.entry).to.deep.include(expected);
      });
    }

    it('a huge message is cut', () => {
      const extraction = extractLogEntry(logError({ message: 'x'.repeat(100_000) }), NOW);
      expect(extraction.kind === 'entry' && extraction.entry.message.length).to.equal(MAX_LOG_MESSAGE_CHARS);
    });
  });

  describe('flushing', () => {
    it('POSTs {"logs": [...]} with all six fields in batches, oldest first', async () => {
      const { log, metrics } = fixture({ maxBatch: 2 });
      for (let i = 0; i < 5; i += 1) log.observe(logError({ message: `m${i}` }, { time: NOW.toISOString() }));
      const posts = [expectLogPost(), expectLogPost(), expectLogPost()];
      expect(await log.flush()).to.equal(true);
      expect(posts.map((post) => post.entries().map((entry) => entry.message))).to.deep.equal([['m0', 'm1'], ['m2', 'm3'], ['m4']]);
      expect(Object.keys(posts[0]?.entries()[0] ?? {})).to.deep.equal(['integrationid', 'message', 'time', 'shkeptncontext', 'task', 'triggeredid']);
      expect(await counter(metrics, 'sent')).to.equal(5);
      expect(await pendingGauge(metrics)).to.equal(0);
    });

    it('flushes every interval once started', async () => {
      const { log } = fixture({ flushIntervalMs: 10 });
      running = log;
      await log.start();
      const post = expectLogPost();
      log.observe(logError({ message: 'periodic' }));
      await until(() => post.scope.isDone() && log.pending === 0, { what: 'the periodic flush' });
      expect(post.entries().map((entry) => entry.message)).to.deep.equal(['periodic']);
    });

    it('entries wait for the registration id, and get it when sent; an event’s own id is kept', async () => {
      const registration: { id?: string } = {};
      const { log } = fixture({ integrationId: () => registration.id });
      log.observe(deploymentFinished({ status: 'errored', message: 'early' }));
      log.observe(logError({ message: 'theirs', integrationid: 'their-id' }));
      expect(await log.flush()).to.equal(false);
      expect(log.pending).to.equal(2);
      registration.id = 'registered-id';
      const post = expectLogPost();
      expect(await log.flush()).to.equal(true);
      expect(post.entries().map((entry) => entry.integrationid)).to.deep.equal(['registered-id', 'their-id']);
    });

    it('without registration (integration id ""), entries are sent with an empty integrationid', async () => {
      const { log } = fixture({ integrationId: () => '' });
      log.observe(deploymentFinished({ status: 'errored', message: 'm' }));
      const post = expectLogPost();
      await log.flush();
      expect(post.entries()[0]?.integrationid).to.equal('');
    });

    it('a failure keeps the entries and is logged once; the next success says so once', async () => {
      const { log, logs, metrics } = fixture();
      log.observe(logError({ message: 'kept' }));
      expectLogPost(503, 'Service Unavailable');
      expect(await log.flush()).to.equal(false);
      expectLogPost(503, 'Service Unavailable');
      expect(await log.flush()).to.equal(false);
      expect(log.pending).to.equal(1);
      const post = expectLogPost();
      expect(await log.flush()).to.equal(true);
      expect(post.entries().map((entry) => entry.message)).to.deep.equal(['kept']);
      expect(logs.entries().filter((entry) => entry.level !== 'debug').map((entry) => `${String(entry.level)} ${String(entry.message)}`)).to.deep.equal([
        'warn error log forwarding failing: 503: Service Unavailable',
        'info error log forwarding works again',
      ]);
      expect(await counter(metrics, 'sent')).to.equal(1);
    });

    it('a rejected token is an error line; the entries are kept for when it is fixed', async () => {
      const { log, logs } = fixture();
      log.observe(logError({ message: 'kept' }));
      expectLogPost(401, { code: 401, message: 'invalid token' });
      await log.flush();
      expect(log.pending).to.equal(1);
      expect(logs.entries().find((entry) => entry.level === 'error')?.message).to.equal('error log forwarding failing: 401: invalid token');
      expect(logs.text()).not.to.include(TOKEN);
      expectLogPost();
      expect(await log.flush()).to.equal(true);
    });

    it('a 400 is final: the batch is dropped, counted and logged, and the next batch still goes', async () => {
      const { log, logs, metrics } = fixture({ maxBatch: 1 });
      log.observe(logError({ message: 'bad' }));
      log.observe(logError({ message: 'good' }));
      expectLogPost(400, { code: 400, message: 'invalid body' });
      const good = expectLogPost();
      expect(await log.flush()).to.equal(true);
      expect(good.entries().map((entry) => entry.message)).to.deep.equal(['good']);
      expect(await counter(metrics, 'rejected')).to.equal(1);
      expect(logs.entries().find((entry) => entry.level === 'error')?.message).to.equal('the control plane rejected 1 error log entries');
    });

    it('the loop retries a failed flush with backoff until it goes through', async () => {
      const { log } = fixture({ flushIntervalMs: 5 });
      running = log;
      log.observe(logError({ message: 'retried' }));
      nock(ENDPOINT).post(LOG_PATH).times(2).reply(500, { code: 500, message: 'db down' });
      const post = expectLogPost();
      await log.start();
      await until(() => post.scope.isDone() && log.pending === 0, { what: 'the retried flush' });
      expect(post.entries().map((entry) => entry.message)).to.deep.equal(['retried']);
    });

    it('entries observed while a flush is in flight wait for the next one', async () => {
      const { log } = fixture();
      log.observe(logError({ message: 'first' }));
      let second!: LogEntry[];
      nock(ENDPOINT).post(LOG_PATH).reply(() => {
        log.observe(logError({ message: 'during' }));
        return [200, {}];
      });
      nock(ENDPOINT).post(LOG_PATH, (body: { logs: LogEntry[] }) => { second = body.logs; return true; }).reply(200, {});
      expect(await log.flush()).to.equal(true);
      expect(second.map((entry) => entry.message)).to.deep.equal(['during']);
    });

    it('keeps at most maxPending entries: the oldest are dropped, counted, and warned about once', async () => {
      const { log, logs, metrics } = fixture({ maxPending: 3 });
      for (let i = 0; i < 5; i += 1) log.observe(logError({ message: `m${i}` }));
      expect(log.pending).to.equal(3);
      expect(await counter(metrics, 'dropped')).to.equal(2);
      expect(await pendingGauge(metrics)).to.equal(3);
      expect(logs.entries().filter((entry) => entry.level === 'warn').map((entry) => entry.message))
        .to.deep.equal(['error log entries dropped: more than 3 wait to be sent; the oldest go first']);
      const post = expectLogPost();
      await log.flush();
      expect(post.entries().map((entry) => entry.message)).to.deep.equal(['m2', 'm3', 'm4']);
    });
  });

  describe('stop', () => {
    it('flushes what waits, without waiting for the interval', async () => {
      const { log } = fixture();
      await log.start();
      log.observe(logError({ message: 'at shutdown' }));
      const post = expectLogPost();
      await log.stop(AbortSignal.timeout(1_000));
      expect(post.entries().map((entry) => entry.message)).to.deep.equal(['at shutdown']);
    });

    it('an id still unknown at shutdown is sent empty rather than lost', async () => {
      const { log } = fixture({ integrationId: () => undefined });
      await log.start();
      log.observe(logError({ message: 'unregistered' }));
      const post = expectLogPost();
      await log.stop(AbortSignal.timeout(1_000));
      expect(post.entries()[0]?.integrationid).to.equal('');
    });

    it('entries that cannot be sent before the deadline are counted as lost, with an error line', async () => {
      const { log, logs, metrics } = fixture();
      await log.start();
      log.observe(logError({ message: 'a' }));
      log.observe(logError({ message: 'b' }));
      nock(ENDPOINT).post(LOG_PATH).delay(5_000).reply(200, {});
      const started = Date.now();
      await log.stop(AbortSignal.timeout(50));
      expect(Date.now() - started).to.be.below(2_000);
      expect(await counter(metrics, 'lost')).to.equal(2);
      expect(log.pending).to.equal(0);
      expect(logs.entries().find((entry) => entry.level === 'error')?.message)
        .to.equal('2 error log entries could not be sent before shutdown and are lost');
      nock.abortPendingRequests();
    });

    it('with nothing waiting, stop sends nothing', async () => {
      const { log } = fixture();
      const post = expectLogPost();
      await log.start();
      await log.stop(AbortSignal.timeout(1_000));
      expect(post.scope.isDone(), 'a POST to the log API').to.equal(false);
      nock.cleanAll();
    });
  });

  describe('retry delay after failed flushes', () => {
    const cases: Array<[string, number, number, number | undefined, number, number]> = [
      ['doubles the interval (no jitter)', 1, 10_000, undefined, 1, 20_000],
      ['jitter takes off up to a quarter', 1, 10_000, undefined, 0, 15_000],
      ['at most a minute', 5, 10_000, undefined, 1, MAX_FLUSH_BACKOFF_MS],
      ['an interval longer than a minute is the bound', 3, 120_000, undefined, 1, 120_000],
      ['Retry-After is honoured', 1, 10_000, 45_000, 1, 45_000],
      ['Retry-After is bounded too', 1, 10_000, 3_600_000, 1, MAX_FLUSH_BACKOFF_MS],
    ];
    for (const [name, failures, interval, retryAfter, random, expected] of cases) {
      it(name, () => {
        expect(flushRetryDelay(failures, interval, retryAfter, random)).to.equal(expected);
      });
    }
  });
});
