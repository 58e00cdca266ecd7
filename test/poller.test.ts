import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import nock from 'nock';
import { loadConfig } from '../lib/config.ts';
import { FileDedupStore } from '../lib/dedup/file.ts';
import { MemoryDedupStore } from '../lib/dedup/memory.ts';
import type { DedupStore } from '../lib/dedup/store.ts';
import { Dispatcher, type DispatchHooks, type DispatchOutcome } from '../lib/dispatcher.ts';
import { filterFromConfig } from '../lib/filters.ts';
import { SubscriptionSet, subscriptionsFromEnvironment } from '../lib/subscriptions.ts';
import { KeptnApi, keptnApiOptions, type TriggeredEventsPage } from '../lib/keptn-api.ts';
import { createMetrics, type Metrics } from '../lib/metrics.ts';
import { MAX_BACKOFF_MS, PAGE_SIZE, Poller, backoffMs, fetchOpenEvents, pollTimeoutMs, type PollerOptions } from '../lib/poller.ts';
import { logSink, type LogSink } from './helpers/log-sink.ts';
import { Recipient } from './helpers/recipient.ts';
import { until } from './helpers/until.ts';
import { useNock } from './helpers/nock-scope.ts';

const ENDPOINT = 'https://keptn.example.com';
const TOKEN = 'poll-token-456';
const TOPIC = 'sh.keptn.event.deployment.triggered';
const TOPIC2 = 'sh.keptn.event.test.triggered';
const path = (topic: string) => `/api/controlPlane/v1/event/triggered/${topic}`;
const PAGE = JSON.parse(readFileSync(new URL('./fixtures/deployment-triggered.page.json', import.meta.url), 'utf8')) as {
  events: Array<Record<string, unknown>>;
};
const TEMPLATE = PAGE.events[0] as Record<string, unknown>;

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { KEPTN_API_ENDPOINT: `${ENDPOINT}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: `${TOPIC},${TOPIC2}`, ...extra };
}

function api(extra: Record<string, string> = {}): KeptnApi {
  return new KeptnApi(keptnApiOptions(loadConfig({ env: env(extra) }), 5_000));
}

/** A triggered event as the control plane lists it (the spec §4.3 fixture with another id). */
function ev(id: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...TEMPLATE, id, ...extra };
}

function page(events: unknown[], more: Partial<{ nextPageKey: string; totalCount: number }> = {}): Record<string, unknown> {
  return { events, nextPageKey: '0', ...more };
}

/** The environment's subscriptions to `topics`, without filter. */
function unfiltered(...topics: string[]): SubscriptionSet {
  return new SubscriptionSet(subscriptionsFromEnvironment(topics, { projects: [], stages: [], services: [] }), 'environment');
}

describe('poller', () => {
  useNock();
  afterEach(() => {
    const done = nock.isDone();
    const pending = nock.pendingMocks();
    nock.cleanAll();
    expect(done, `every expected request was made (pending: ${pending.join(', ')})`).to.equal(true);
  });

  describe('fetchOpenEvents: pagination, headers, error bodies', () => {
    const fetch = (extra: Record<string, string> = {}, options: Partial<Parameters<typeof fetchOpenEvents>[2]> = {}) =>
      fetchOpenEvents(api(extra), TOPIC, { timeoutMs: 2_000, ...options });

    it('asks for large pages with x-token, follows nextPageKey to the last page', async () => {
      nock(ENDPOINT, { reqheaders: { 'x-token': TOKEN } })
        .get(path(TOPIC)).query({ pageSize: String(PAGE_SIZE) }).reply(200, page([ev('a'), ev('b')], { nextPageKey: '2', totalCount: 3 }))
        .get(path(TOPIC)).query({ pageSize: String(PAGE_SIZE), nextPageKey: '2' }).reply(200, page([ev('c')], { totalCount: 3 }));
      const poll = await fetch();
      expect(poll.kind).to.equal('complete');
      if (poll.kind === 'failed') return;
      expect(poll.entries.map((entry) => (entry as { id: string }).id)).to.deep.equal(['a', 'b', 'c']);
      expect(poll.pages).to.equal(2);
      expect([...poll.ids]).to.deep.equal(['a', 'b', 'c']);
    });

    it('the real shipyard-controller’s page (spec §4.3) is one complete page', async () => {
      nock(ENDPOINT).get(path(TOPIC)).query(true).reply(200, PAGE);
      const poll = await fetch();
      expect(poll).to.include({ kind: 'complete', totalCount: 1, pages: 1 });
    });

    it('repeated ids across pages are listed once', async () => {
      nock(ENDPOINT)
        .get(path(TOPIC)).query(true).reply(200, page([ev('a'), ev('b')], { nextPageKey: '2' }))
        .get(path(TOPIC)).query(true).reply(200, page([ev('a'), ev('c')]));
      const poll = await fetch();
      expect(poll.kind === 'complete' && poll.entries.map((entry) => (entry as { id: string }).id)).to.deep.equal(['a', 'b', 'c']);
    });

    it('the server’s pagination bug (§4.8.3): 21 open, 20 distinct seen → partial', async () => {
      const all = Array.from({ length: 21 }, (_, n) => ev(`e${n}`));
      nock(ENDPOINT)
        .get(path(TOPIC)).query({ pageSize: '20' }).reply(200, page(all.slice(0, 20), { nextPageKey: '20', totalCount: 21 }))
        .get(path(TOPIC)).query({ pageSize: '20', nextPageKey: '20' }).reply(200, page(all.slice(0, 1), { totalCount: 21 }));
      const poll = await fetch({}, { pageSize: 20 });
      expect(poll.kind).to.equal('partial');
      if (poll.kind === 'failed') return;
      expect(poll.ids.size).to.equal(20);
      expect(poll.totalCount).to.equal(21);
      expect(poll.reason).to.match(/20 distinct events listed of the 21/);
    });

    it('a cursor handed out twice ends the poll as partial (no endless loop)', async () => {
      nock(ENDPOINT)
        .get(path(TOPIC)).query(true).reply(200, page([ev('a')], { nextPageKey: '5' }))
        .get(path(TOPIC)).query(true).reply(200, page([ev('b')], { nextPageKey: '5' }));
      const poll = await fetch();
      expect(poll).to.include({ kind: 'partial', reason: 'the control plane handed out the cursor "5" twice' });
    });

    it('pages per poll are bounded', async () => {
      nock(ENDPOINT).get(path(TOPIC)).query(true).times(3).reply(200, (uri) => {
        const key = Number(new URL(uri, ENDPOINT).searchParams.get('nextPageKey') ?? 0);
        return page([ev(`e${key}`)], { nextPageKey: String(key + 1) });
      });
      const poll = await fetch({}, { maxPages: 3 });
      expect(poll).to.include({ kind: 'partial', reason: 'stopped after 3 pages' });
    });

    it('one failed page fails the whole poll (a partial list is never used as the list)', async () => {
      nock(ENDPOINT)
        .get(path(TOPIC)).query(true).reply(200, page([ev('a')], { nextPageKey: '1' }))
        .get(path(TOPIC)).query(true).reply(502, '<html><body><h1>502 Bad Gateway</h1></body></html>');
      const poll = await fetch();
      expect(poll.kind).to.equal('failed');
      expect(poll.kind === 'failed' && poll.error.message).to.equal('502: 502 Bad Gateway');
    });

    it('500 "no matching event found" to a project-filtered poll is an empty, complete list (§4.8.1)', async () => {
      nock(ENDPOINT).get(path(TOPIC)).query({ pageSize: String(PAGE_SIZE), project: 'sockshop' })
        .reply(500, { code: 500, message: 'no matching event found' });
      const poll = await fetch({}, { project: 'sockshop' });
      expect(poll).to.deep.include({ kind: 'complete', entries: [], totalCount: 0 });
    });

    it('sends stage and service too when given (single-value subscription filters, as the 1.x reference)', async () => {
      nock(ENDPOINT).get(path(TOPIC)).query({ pageSize: String(PAGE_SIZE), stage: 'dev', service: 'carts' })
        .reply(200, page([ev('a')]));
      const poll = await fetch({}, { stage: 'dev', service: 'carts' });
      expect(poll.kind).to.equal('complete');
    });

    it('… also when the project filter is part of HTTP_EVENT_POLLING_ENDPOINT', async () => {
      nock(ENDPOINT).get('/api/controlPlane/v1/event/triggered/' + TOPIC).query({ pageSize: String(PAGE_SIZE), project: 'sockshop' })
        .reply(500, { code: 500, message: 'no matching event found' });
      const poll = await fetch({ HTTP_EVENT_POLLING_ENDPOINT: `${ENDPOINT}/api/controlPlane/v1/event/triggered?project=sockshop` });
      expect(poll.kind).to.equal('complete');
    });

    it('… but without a project filter it is a failure', async () => {
      nock(ENDPOINT).get(path(TOPIC)).query(true).reply(500, { code: 500, message: 'no matching event found' });
      const poll = await fetch();
      expect(poll.kind).to.equal('failed');
      expect(poll.kind === 'failed' && poll.error.message).to.equal('500: no matching event found');
    });

    it('a JSON error body without message (the reference panicked, D8) is a failure with its status', async () => {
      nock(ENDPOINT).get(path(TOPIC)).query(true).reply(401, { error: 'unauthorized' });
      const poll = await fetch();
      expect(poll.kind === 'failed' && poll.error.message).to.equal('401 Unauthorized');
    });

    it('a page slower than the limit fails as a timeout', async () => {
      nock(ENDPOINT).get(path(TOPIC)).query(true).delay(500).reply(200, page([ev('a')]));
      const poll = await fetch({}, { timeoutMs: 50 });
      expect(poll).to.include({ kind: 'failed', timedOut: true });
      expect(poll.kind === 'failed' && poll.error.message).to.equal('no answer within 50 ms');
    });
  });

  describe('backoff and time limits', () => {
    it('the interval while polls succeed', () => {
      expect(backoffMs(10_000, 0, () => 0.5)).to.equal(10_000);
    });

    it('doubles per failed cycle with jitter (half to all), at least the interval, at most a minute', () => {
      const low = () => 0;
      const high = () => 0.999_999;
      expect([1, 2, 3, 4].map((failures) => backoffMs(10_000, failures, high))).to.satisfy((delays: number[]) =>
        delays.every((delay, n) => Math.abs(delay - Math.min(60_000, 10_000 * 2 ** (n + 1))) < 1));
      expect(backoffMs(10_000, 1, low)).to.equal(10_000);
      expect(backoffMs(10_000, 2, low)).to.equal(20_000);
      expect(backoffMs(10_000, 10, high)).to.be.at.most(MAX_BACKOFF_MS);
      expect(backoffMs(10_000, 10, low)).to.equal(30_000);
      expect(backoffMs(20, 3, () => 0.5)).to.equal(120);
    });

    it('an interval above a minute is never shortened', () => {
      expect(backoffMs(300_000, 3, () => 0)).to.equal(300_000);
    });

    it('honours Retry-After as the least wait, within the cap', () => {
      expect(backoffMs(1_000, 1, () => 0, 30_000)).to.equal(30_000);
      expect(backoffMs(1_000, 1, () => 0, 600_000)).to.equal(60_000);
    });

    it('a page may take three waits, from 1 s to 30 s', () => {
      expect(pollTimeoutMs(20)).to.equal(1_000);
      expect(pollTimeoutMs(2_000)).to.equal(6_000);
      expect(pollTimeoutMs(10_000)).to.equal(30_000);
      expect(pollTimeoutMs(60_000)).to.equal(30_000);
    });
  });

  describe('Poller: dedup, filters, invalid entries, states', () => {
    let recipient: Recipient;
    let metrics: Metrics;
    let logs: LogSink;
    let store: MemoryDedupStore;
    let dispatcher: Dispatcher;
    const pollers: Poller[] = [];

    function poller(extraEnv: Record<string, string> = {}, options: Partial<PollerOptions> = {}): Poller {
      const config = loadConfig({ env: env(extraEnv) });
      const created = new Poller({
        api: new KeptnApi(keptnApiOptions(config, 5_000)),
        subscriptions: new SubscriptionSet(subscriptionsFromEnvironment(config.pubsubTopic, filterFromConfig(config)), 'environment'),
        intervalMs: 20,
        store,
        dispatcher,
        logger: logs.logger,
        metrics,
        random: () => 0.5,
        ...options,
      });
      pollers.push(created);
      return created;
    }

    /** One poll answer per topic. */
    function serve(first: Record<string, unknown> | number, second: Record<string, unknown> | number = page([])): void {
      for (const [topic, answer] of [[TOPIC, first], [TOPIC2, second]] as const) {
        const scope = nock(ENDPOINT).get(path(topic)).query(true);
        if (typeof answer === 'number') scope.reply(answer, { code: answer, message: `failing with ${answer}` });
        else scope.reply(200, answer);
      }
    }

    async function counter(metric: keyof Pick<Metrics, 'eventsInvalid' | 'eventsFiltered' | 'eventsDeduplicated' | 'eventsReceived'>): Promise<number> {
      const { values } = await metrics[metric].get();
      return values.reduce((total, value) => total + value.value, 0);
    }

    beforeEach(async () => {
      recipient = await Recipient.start();
      metrics = createMetrics({ defaultMetrics: false });
      logs = logSink({ secrets: [TOKEN] });
      store = new MemoryDedupStore();
      dispatcher = new Dispatcher({
        recipientUrl: new URL(`http://127.0.0.1:${recipient.port}`), timeoutMs: 2_000, concurrency: 4,
        logger: logs.logger, metrics, sleep: async () => undefined,
      });
    });
    afterEach(async () => {
      recipient.release();
      for (const created of pollers.splice(0)) await created.stop(AbortSignal.timeout(2_000));
      await dispatcher.stop(AbortSignal.timeout(1_000));
      await recipient.close();
      expect(logs.text()).to.not.include(TOKEN);
    });

    it('Test_PollAndForwardEvents (spec §14.6): two topics, one event each → exactly 2 dispatches', async () => {
      const p = poller();
      for (let cycle = 0; cycle < 3; cycle++) {
        serve(page([ev('id-1', { type: TOPIC })], { totalCount: 1 }), page([ev('id-2', { type: TOPIC2 })], { totalCount: 1 }));
        expect(await p.pollOnce()).to.equal(true);
      }
      await recipient.received(2);
      await until(() => store.size() === 2);
      expect(recipient.ids().sort()).to.deep.equal(['id-1', 'id-2']);
      expect(await counter('eventsDeduplicated')).to.equal(4);
    });

    it('an event listed while its dispatch is in flight is not dispatched again', async () => {
      recipient.hang();
      const p = poller();
      serve(page([ev('a')]));
      await p.pollOnce();
      await recipient.received(1);
      serve(page([ev('a')]));
      await p.pollOnce();
      expect(recipient.held).to.equal(1);
      recipient.release();
      expect(recipient.ids()).to.deep.equal(['a']);
    });

    it('a failed poll (500) forgets nothing: no re-dispatch afterwards (the reference did, D1)', async () => {
      const p = poller();
      serve(page([ev('a'), ev('b')], { totalCount: 2 }));
      await p.pollOnce();
      await recipient.received(2);
      serve(500, 500);
      expect(await p.pollOnce()).to.equal(false);
      serve(page([ev('a'), ev('b')], { totalCount: 2 }));
      expect(await p.pollOnce()).to.equal(true);
      expect(recipient.ids().sort()).to.deep.equal(['a', 'b']);
      expect(store.size(TOPIC)).to.equal(2);
    });

    it('a partial poll forgets nothing; a complete one drops what is no longer listed', async () => {
      const p = poller();
      serve(page([ev('a'), ev('b')], { totalCount: 2 }));
      await p.pollOnce();
      await until(() => store.size(TOPIC) === 2 && recipient.requests.length === 2);
      // Partial: 'a' hidden by the server, but it still counts 2.
      serve(page([ev('b')], { totalCount: 2 }));
      await p.pollOnce();
      expect(store.has(TOPIC, 'a')).to.equal(true);
      serve(page([ev('a'), ev('b')], { totalCount: 2 }));
      await p.pollOnce();
      expect(recipient.ids().sort()).to.deep.equal(['a', 'b']);
      // Complete without 'a': the task is over, its id is forgotten.
      serve(page([ev('b')], { totalCount: 1 }));
      await p.pollOnce();
      expect(store.has(TOPIC, 'a')).to.equal(false);
      expect(store.has(TOPIC, 'b')).to.equal(true);
      const partials = logs.entries().filter((entry) => /only part of the open events/.test(String(entry.message)));
      expect(partials).to.have.length(1);
      expect(partials[0]).to.include({ topic: TOPIC, seen: 1, totalCount: 2 });
    });

    it('a released id (dispatch failed for good) is dispatched again by a later poll, and delivered once', async () => {
      await recipient.down();
      const p = poller();
      serve(page([ev('a')]));
      await p.pollOnce();
      await until(() => !store.has(TOPIC, 'a'), { what: 'the id released' });
      await recipient.up();
      serve(page([ev('a')]));
      await p.pollOnce();
      await recipient.received(1);
      serve(page([ev('a')]));
      await p.pollOnce();
      expect(recipient.ids()).to.deep.equal(['a']);
    });

    it('a dispatch still queued when a complete poll no longer lists its event is not sent', async () => {
      await dispatcher.stop(AbortSignal.timeout(100));
      dispatcher = new Dispatcher({
        recipientUrl: new URL(`http://127.0.0.1:${recipient.port}`), timeoutMs: 2_000, concurrency: 1, logger: logs.logger, metrics,
      });
      recipient.hang();
      const p = poller();
      serve(page([ev('a'), ev('b')]));
      await p.pollOnce();
      await recipient.received(1);
      serve(page([ev('a')]));
      await p.pollOnce();
      recipient.release();
      await until(async () => (await metrics.eventsDispatched.get()).values.some((value) => value.labels.outcome === 'cancelled'));
      expect(recipient.ids()).to.deep.equal(['a']);
    });

    it('entries that are not valid CloudEvents are skipped and reported once; the poller carries on', async () => {
      const p = poller();
      const entries = [
        null, 'text', { specversion: '1.0', source: 's', type: TOPIC },
        ev('bad-time', { time: '' }), ev('bad-version', { specversion: '2.0' }),
        ev('other-type', { type: 'sh.keptn.event.release.triggered' }), ev('good'),
      ];
      for (let cycle = 0; cycle < 2; cycle++) {
        serve(page(entries));
        expect(await p.pollOnce()).to.equal(true);
      }
      await recipient.received(1);
      expect(recipient.ids()).to.deep.equal(['good']);
      expect(await counter('eventsInvalid')).to.equal(6);
      const warnings = logs.entries().filter((entry) => entry.message === 'skipping a polled entry that is not a valid Keptn CloudEvent');
      expect(warnings).to.have.length(6);
      expect(warnings.map((entry) => entry.reason)).to.include.members([
        'a CloudEvent must be a JSON object', 'missing "id"', '"specversion" must be "1.0" or "0.3"',
        `"type" is sh.keptn.event.release.triggered, not the polled ${TOPIC}`,
      ]);
    });

    it('filtered events are never dispatched, and counted once', async () => {
      const p = poller({ STAGE_FILTER: 'dev,staging', SERVICE_FILTER: 'carts' });
      const entries = [
        ev('dev-carts'), ev('prod-carts', { data: { project: 'sockshop', stage: 'production', service: 'carts' } }),
        ev('no-service', { data: { project: 'sockshop', stage: 'dev' } }), ev('string-data', { data: 'dev' }),
        ev('staging-carts', { data: { stage: 'staging', service: 'carts' } }),
      ];
      for (let cycle = 0; cycle < 3; cycle++) {
        serve(page(entries));
        await p.pollOnce();
      }
      await recipient.received(2);
      expect(recipient.ids().sort()).to.deep.equal(['dev-carts', 'staging-carts']);
      expect(await counter('eventsFiltered')).to.equal(3);
      expect(store.size(TOPIC)).to.equal(2);
    });

    it('a one-project PROJECT_FILTER is sent as ?project=; "no matching event found" empties the record', async () => {
      const p = poller({ PROJECT_FILTER: 'sockshop' });
      nock(ENDPOINT).get(path(TOPIC)).query({ pageSize: String(PAGE_SIZE), project: 'sockshop' }).reply(200, page([ev('a')], { totalCount: 1 }));
      nock(ENDPOINT).get(path(TOPIC2)).query({ pageSize: String(PAGE_SIZE), project: 'sockshop' }).reply(500, { code: 500, message: 'no matching event found' });
      expect(await p.pollOnce()).to.equal(true);
      await recipient.received(1);
      for (const topic of [TOPIC, TOPIC2]) {
        nock(ENDPOINT).get(path(topic)).query({ pageSize: String(PAGE_SIZE), project: 'sockshop' }).reply(500, { code: 500, message: 'no matching event found' });
      }
      expect(await p.pollOnce()).to.equal(true);
      expect(store.size()).to.equal(0);
      expect(logs.entries().filter((entry) => entry.level === 'warn')).to.deep.equal([]);
    });

    it('a failure is logged once per change of state, with status and Keptn’s message; recovery once', async () => {
      const p = poller();
      for (let cycle = 0; cycle < 3; cycle++) {
        serve(500, page([]));
        expect(await p.pollOnce()).to.equal(false);
      }
      serve(page([]), page([]));
      expect(await p.pollOnce()).to.equal(true);
      const lines = logs.entries().filter((entry) => entry.level === 'warn' || entry.message === 'polling the control plane works again');
      expect(lines).to.have.length(2);
      expect(lines[0]).to.include({
        message: 'cannot poll the control plane: known events are kept, polls back off', topic: TOPIC, status: 500,
        error: '500: failing with 500', url: `${ENDPOINT}/api/controlPlane/v1/event/triggered/${TOPIC}`,
      });
      expect(lines[1]).to.include({ level: 'info', topic: TOPIC });
      const { values } = await metrics.polls.get();
      expect(values.find((value) => value.labels.topic === TOPIC && value.labels.outcome === 'failure')?.value).to.equal(3);
    });

    it('backs off while polls fail and returns to the interval after a success', async () => {
      const p = poller();
      const waits: number[] = [];
      for (let cycle = 0; cycle < 4; cycle++) {
        serve(503, 503);
        await p.pollOnce();
        waits.push(p.nextWaitMs);
      }
      expect(waits).to.deep.equal([30, 60, 120, 240]);
      expect(p.failures).to.equal(4);
      serve(page([]), page([]));
      await p.pollOnce();
      expect(p.nextWaitMs).to.equal(20);
      expect(p.failures).to.equal(0);
    });

    it('readiness holds after the first cycle that fetched every topic', async () => {
      const calls: boolean[] = [];
      const p = poller({}, { setReady: (holds) => calls.push(holds) });
      serve(page([]), 500);
      await p.pollOnce();
      expect(calls).to.deep.equal([]);
      serve(page([]), page([ev('x', { type: TOPIC2 })], { nextPageKey: '1', totalCount: 2 }));
      nock(ENDPOINT).get(path(TOPIC2)).query(true).reply(200, page([ev('x', { type: TOPIC2 })], { totalCount: 2 }));
      await p.pollOnce();
      expect(calls).to.deep.equal([true]);
      expect(logs.entries().filter((entry) => entry.message === 'first poll cycle completed')).to.have.length(1);
    });
  });

  describe('Poller loop', () => {
    /** A control plane stand-in at the API edge: counts calls, can be slowed. */
    function stubApi(answer: (topic: string) => Promise<TriggeredEventsPage>) {
      const state = { calls: 0, running: 0, maxRunning: 0 };
      const stub = {
        state,
        pollingUrlFor: (type: string) => new URL(`${ENDPOINT}/api/controlPlane/v1/event/triggered/${type}`),
        async triggeredEventsPage(topic: string): Promise<TriggeredEventsPage> {
          state.calls++;
          state.running++;
          state.maxRunning = Math.max(state.maxRunning, state.running);
          try {
            return await answer(topic);
          } finally {
            state.running--;
          }
        },
      };
      return stub;
    }

    function loopPoller(api: ReturnType<typeof stubApi>, { sleep, store = new MemoryDedupStore(), logs = logSink() }: {
      sleep?: PollerOptions['sleep']; store?: MemoryDedupStore; logs?: LogSink;
    } = {}): Poller {
      const metrics = createMetrics({ defaultMetrics: false });
      return new Poller({
        api, subscriptions: unfiltered(TOPIC, TOPIC2), intervalMs: 10, store,
        dispatcher: new Dispatcher({ recipientUrl: new URL('http://127.0.0.1:9'), timeoutMs: 100, concurrency: 1, logger: logs.logger, metrics }),
        logger: logs.logger, metrics, ...(sleep && { sleep }),
      });
    }

    it('polls at once at start, all topics concurrently, and cycles never overlap', async () => {
      const empty: TriggeredEventsPage = { events: [], nextPageKey: undefined, totalCount: undefined };
      const api = stubApi(async () => {
        await new Promise((resolve) => setTimeout(resolve, 15));
        return empty;
      });
      const p = loopPoller(api);
      await p.start();
      expect(api.state.calls, 'first poll without waiting an interval').to.equal(2);
      await until(() => api.state.calls >= 10, { what: '5 cycles' });
      await p.stop(AbortSignal.timeout(1_000));
      // Two topics at once, never more: a slow cycle (15 ms > 10 ms interval) is not overlapped.
      expect(api.state.maxRunning).to.equal(2);
    });

    it('stop during the wait between cycles returns promptly and polls no more', async () => {
      const api = stubApi(async () => ({ events: [], nextPageKey: undefined, totalCount: undefined }));
      let sleeping!: () => void;
      const asleep = new Promise<void>((resolve) => { sleeping = resolve; });
      const p = loopPoller(api, {
        sleep: (_ms, signal) => new Promise((_resolve, reject) => {
          sleeping();
          signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
        }),
      });
      await p.start();
      await asleep;
      await p.stop(AbortSignal.timeout(1_000));
      expect(api.state.calls).to.equal(2);
    });

    it('backpressure: while dispatches are queued, the next cycle waits for the queue to empty (at most a minute)', async () => {
      const api = stubApi(async () => ({ events: [], nextPageKey: undefined, totalCount: undefined }));
      let emptied!: () => void;
      const queueEmpty = new Promise<void>((resolve) => { emptied = resolve; });
      let bounded!: (ms: number) => void;
      const boundStarted = new Promise<number>((resolve) => { bounded = resolve; });
      const logs = logSink();
      const metrics = createMetrics({ defaultMetrics: false });
      let queued = 5;
      const p = new Poller({
        api, subscriptions: unfiltered(TOPIC, TOPIC2), intervalMs: 10, store: new MemoryDedupStore(), logger: logs.logger, metrics,
        dispatcher: {
          dispatch: () => Promise.reject(new Error('nothing to dispatch here')),
          stop: async () => undefined,
          get queued() { return queued; },
          whenQueueEmpty: () => queueEmpty,
        },
        // The interval passes at the next turn of the event loop; the one-minute bound never does (until stop).
        sleep: (ms, signal) => new Promise((resolve, reject) => {
          if (ms !== MAX_BACKOFF_MS) {
            setImmediate(resolve);
          } else {
            bounded(ms);
            signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
          }
        }),
      });
      await p.start();
      expect(await boundStarted).to.equal(MAX_BACKOFF_MS);
      expect(api.state.calls, 'no poll while dispatches are queued').to.equal(2);
      queued = 0;
      emptied();
      await until(() => api.state.calls >= 4, { what: 'the next cycle' });
      await p.stop(AbortSignal.timeout(1_000));
    });

    it('a cycle that throws does not end the loop', async () => {
      const api = stubApi(async () => ({ events: [], nextPageKey: undefined, totalCount: undefined }));
      class FlakyStore extends MemoryDedupStore {
        flushes = 0;
        override async flush(): Promise<void> {
          if (++this.flushes === 1) throw new Error('disk on fire');
        }
      }
      const store = new FlakyStore();
      const logs = logSink();
      const p = loopPoller(api, { store, logs });
      await p.start();
      await until(() => store.flushes >= 3, { what: 'cycles after the failing one' });
      await p.stop(AbortSignal.timeout(1_000));
      expect(logs.entries().filter((entry) => entry.message === 'poll cycle failed unexpectedly')).to.have.length(1);
    });
  });

  describe('Poller: subscriptions changing at runtime', () => {
    const SEEDED = { id: '', event: TOPIC, filter: { projects: [], stages: [], services: [] } };
    const FROM_CONTROL_PLANE = { id: 'sub-1', event: TOPIC, filter: { projects: [], stages: [], services: [] } };

    /** A dispatcher that holds every dispatch until the test sends (runs `beforeSend`) and settles it. */
    function heldDispatches() {
      const held: Array<{ event: { id: string; data?: unknown }; hooks: DispatchHooks; settle: (outcome: DispatchOutcome) => void }> = [];
      return {
        held,
        dispatch: (_topic: string, event: { id: string; data?: unknown }, hooks: DispatchHooks = {}) => new Promise<DispatchOutcome>((settle) => {
          held.push({ event, hooks, settle });
        }),
        stop: async () => undefined,
        queued: 0,
        whenQueueEmpty: async () => undefined,
      };
    }

    function pollerOf(subscriptions: SubscriptionSet, dispatcher: ReturnType<typeof heldDispatches>, store: DedupStore = new MemoryDedupStore(), logs = logSink()): Poller {
      return new Poller({
        api: {
          pollingUrlFor: (type: string) => new URL(`${ENDPOINT}/api/controlPlane/v1/event/triggered/${type}`),
          triggeredEventsPage: async () => ({ events: [ev('e1')], nextPageKey: undefined, totalCount: undefined }),
        },
        subscriptions, intervalMs: 10, store, dispatcher: dispatcher as unknown as PollerOptions['dispatcher'],
        logger: logs.logger, metrics: createMetrics({ defaultMetrics: false }),
      });
    }

    it('a control-plane subscription takes over what the environment’s sent, and sends it again if that dispatch failed', async () => {
      const subscriptions = new SubscriptionSet([SEEDED], 'environment', { settled: false });
      const dispatcher = heldDispatches();
      const store = new MemoryDedupStore();
      const p = pollerOf(subscriptions, dispatcher, store);
      await p.pollOnce();
      expect(dispatcher.held).to.have.length(1);
      await dispatcher.held[0]!.hooks.beforeSend?.();

      subscriptions.replace([FROM_CONTROL_PLANE], 'control plane');
      await p.pollOnce();
      expect(dispatcher.held, 'taken over: not dispatched again').to.have.length(1);
      expect(store.topics()).to.deep.equal([`${TOPIC}#sub-1`]);

      dispatcher.held[0]!.settle({ kind: 'failed', reason: 'recipient down', attempts: 3 } as DispatchOutcome);
      await until(() => !store.has(`${TOPIC}#sub-1`, 'e1'));
      await p.pollOnce();
      expect(dispatcher.held).to.have.length(2);
      expect(dispatcher.held[1]!.event.data).to.deep.include({ temporaryData: { distributor: { subscriptionID: 'sub-1' } } });
    });

    it('one still waiting for a slot is not taken over: its dispatch is cancelled and the new subscription dispatches it', async () => {
      const subscriptions = new SubscriptionSet([SEEDED], 'environment', { settled: false });
      const dispatcher = heldDispatches();
      const p = pollerOf(subscriptions, dispatcher);
      await p.pollOnce();
      subscriptions.replace([FROM_CONTROL_PLANE], 'control plane');
      await p.pollOnce();
      expect(dispatcher.held).to.have.length(2);
      let refused: unknown;
      await dispatcher.held[0]!.hooks.beforeSend?.().catch((error: unknown) => { refused = error; });
      expect(String(refused)).to.match(/no longer lists it/);
      await dispatcher.held[1]!.hooks.beforeSend?.();
    });

    it('until the subscriptions are settled, the records of an earlier run’s control-plane subscriptions are kept and honoured', async () => {
      const store = new MemoryDedupStore();
      store.add(`${TOPIC}#sub-1`, 'e1');
      const dispatcher = heldDispatches();
      const subscriptions = new SubscriptionSet([SEEDED], 'environment', { settled: false });
      const logs = logSink();
      const p = pollerOf(subscriptions, dispatcher, store, logs);
      await p.start();
      await until(() => logs.entries().some((entry) => entry.message === 'first poll cycle completed'), { what: 'the first cycle' });
      await p.stop(AbortSignal.timeout(1_000));
      expect(dispatcher.held, 'the seed knows e1 was handed over').to.have.length(0);
      expect(store.has(`${TOPIC}#sub-1`, 'e1')).to.equal(true);

      const settled = new MemoryDedupStore();
      settled.add(`${TOPIC}#sub-1`, 'e1');
      const q = pollerOf(new SubscriptionSet([SEEDED], 'environment'), heldDispatches(), settled);
      await q.start();
      await q.stop(AbortSignal.timeout(1_000));
      expect(settled.has(`${TOPIC}#sub-1`, 'e1'), 'settled: the records of other subscriptions are freed').to.equal(false);
    });

    it('KEPTN_API_VERSION=1.x: the environment’s subscriptions are not polled at all before the heartbeat settles them', async () => {
      const subscriptions = new SubscriptionSet([SEEDED], 'environment', { settled: false, holdMs: Infinity });
      const dispatcher = heldDispatches();
      const p = pollerOf(subscriptions, dispatcher);
      await p.pollOnce();
      expect(dispatcher.held, 'users may have unsubscribed from it in the Bridge').to.have.length(0);
      subscriptions.replace([FROM_CONTROL_PLANE], 'control plane');
      await p.pollOnce();
      expect(dispatcher.held).to.have.length(1);
      expect(dispatcher.held[0]!.event.data).to.deep.include({ temporaryData: { distributor: { subscriptionID: 'sub-1' } } });
    });

    it('auto: once the hold has passed without an answer, the environment’s subscriptions are polled', async () => {
      let now = 0;
      const subscriptions = new SubscriptionSet([SEEDED], 'environment', { settled: false, holdMs: 30_000, now: () => now });
      const dispatcher = heldDispatches();
      const p = pollerOf(subscriptions, dispatcher);
      await p.pollOnce();
      expect(dispatcher.held).to.have.length(0);
      now = 30_000;
      await p.pollOnce();
      expect(dispatcher.held).to.have.length(1);
    });

    it('the records an unsettled start copies from an earlier run are written, so they hold after the next restart too', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'poller-dedup-'));
      try {
        const first = new FileDedupStore({ dir, logger: logSink().logger });
        await first.open();
        first.add(`${TOPIC}#sub-1`, 'e1');
        await first.persist(`${TOPIC}#sub-1`, 'e1');
        await first.close();

        // Restart: the control plane now lists no subscription, so the environment's stay in force.
        const subscriptions = new SubscriptionSet([SEEDED], 'environment', { settled: false });
        const second = new FileDedupStore({ dir, logger: logSink().logger });
        const p = pollerOf(subscriptions, heldDispatches(), second);
        await p.start();
        subscriptions.replace([SEEDED], 'environment');
        await p.pollOnce();
        await p.stop(AbortSignal.timeout(1_000));

        const third = new FileDedupStore({ dir, logger: logSink().logger });
        await third.open();
        expect(third.has(TOPIC, 'e1'), 'the environment subscription’s record survived the prune of sub-1').to.equal(true);
        await third.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
