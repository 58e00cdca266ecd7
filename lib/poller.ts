/**
 * The execution-plane pipeline: poll every subscription, deduplicate,
 * filter, dispatch. One cycle polls all subscriptions at once; cycles never
 * overlap (cycle, abortable sleep, repeat); the first runs at start.
 *
 * Subscriptions (see `subscriptions.ts`) are read at the start of each cycle,
 * so a change the heartbeat brings applies from the next cycle on. Each has
 * its own dedup record (the reference's cache is keyed by subscription id
 * too): an event two subscriptions match is dispatched once for each. When a
 * subscription goes away its record is freed; a new one of the same event
 * type that arrives in the same change takes the record over, so switching
 * from the environment's subscriptions to the control plane's (or an id
 * changing) dispatches nothing twice. A subscription re-added later starts
 * with an empty record and gets the still open events again: the control
 * plane gives it a new id, and its dispatches carry that id.
 *
 * The dedup rules, which fix the reference's defects (spec §5.3):
 * - an id enters the record when its dispatch is queued (so a poll while it is
 *   queued or in flight skips it), and reaches the disk store right before the
 *   request goes out;
 * - it leaves when its dispatch surely failed (released: a later poll sends it
 *   again), or after a *complete* poll of its topic no longer lists it;
 * - a poll is complete when every page was fetched and, where the control
 *   plane reports `totalCount`, at least that many distinct ids were seen. The
 *   real shipyard-controller repeats page 1 instead of serving later pages
 *   (spec §4.8.3), hiding older events; such a poll is partial, and a partial
 *   or failed poll never removes anything.
 *
 * Backpressure: while dispatches wait for a slot, the next cycle waits too
 * (at most a minute): it would only list the same events again, and parsing
 * a long list over and over takes the CPU the dispatches need.
 *
 * Scheduling: while any topic's poll fails, the wait between cycles doubles
 * (with jitter, at least the interval and at least a `Retry-After`, never
 * more than a minute) and returns to the interval after a cycle without failure.
 * Failures are logged once per change of state, not per cycle.
 *
 * Entries that are not valid CloudEvents (spec §3: specversion, id, source,
 * type; `time` RFC 3339), or whose `type` is not the polled one, are skipped
 * and reported once each; nothing in a poll answer can stop the poller. The
 * record is keyed by the subscription, never by the event's own type (the
 * reference mixed topic and type, D4).
 *
 * Readiness: `poller` holds once a cycle fetched every subscription (completely or
 * partially); it is not withdrawn later, since an agent that polled once is
 * doing its job while the control plane is away.
 */
import { setImmediate as yieldToEventLoop, setTimeout as sleepFor } from 'node:timers/promises';
import { validateCloudEvent, type KeptnCloudEvent } from './cloudevents.ts';
import type { DedupStore } from './dedup/store.ts';
import type { Dispatcher } from './dispatcher.ts';
import { matchesFilter, serverSideFilter } from './filters.ts';
import { KeptnApiError, type KeptnApi } from './keptn-api.ts';
import type { Part } from './lifecycle.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import { dedupKeyOf, describeSubscription, withSubscriptionId, type Subscription } from './subscriptions.ts';

/**
 * Events asked for per page. Large, because the real control plane serves
 * page 1 again instead of page 2 (spec §4.8.3): only what fits on the first
 * page is ever seen. It loads every open event anyway before slicing a page,
 * so a large page costs it nothing more.
 */
export const PAGE_SIZE = 1_000;
/** Pages fetched per topic and cycle at most; a control plane handing out cursors for ever cannot hold the poller. */
export const MAX_PAGES = 1_000;
/** Invalid or filtered entries remembered per topic (to report each once) while polls stay partial; then it starts over. */
const NOTICED_MAX = 10_000;
/** Entries processed between two turns of the event loop. */
const YIELD_EVERY = 256;
/** Longest wait between cycles while polls fail. */
export const MAX_BACKOFF_MS = 60_000;
/** How often a poller held back by unsettled subscriptions checks again. */
export const HOLD_CHECK_MS = 1_000;
/**
 * Limit for one page request: three times the current wait between cycles
 * (a request slower than that delays the cycles it is meant to feed), at
 * least 1 s (what a loaded control plane needs for a large page), at most
 * 30 s. While polls fail the wait grows, and the limit with it.
 */
export function pollTimeoutMs(waitMs: number): number {
  return Math.min(30_000, Math.max(1_000, 3 * waitMs));
}

/** The wait before the next cycle after `failures` failed cycles in a row. */
export function backoffMs(intervalMs: number, failures: number, random: () => number, retryAfterMs?: number): number {
  if (failures === 0) return intervalMs;
  const ceiling = Math.max(intervalMs, MAX_BACKOFF_MS);
  const exponential = Math.min(ceiling, intervalMs * 2 ** failures);
  // "Equal jitter": between half and all of the exponential value, never below the interval.
  const jittered = Math.max(intervalMs, exponential / 2 + (exponential / 2) * random());
  return Math.min(ceiling, Math.max(jittered, retryAfterMs ?? 0));
}

/** All open events of one topic, as far as the control plane let us see them. */
export type TopicPoll =
  | {
    readonly kind: 'complete' | 'partial';
    /** Entries in list order, repeated ids dropped. */
    readonly entries: readonly unknown[];
    /** Distinct ids seen. */
    readonly ids: ReadonlySet<string>;
    readonly totalCount: number | undefined;
    readonly pages: number;
    /** Why the poll is partial. */
    readonly reason?: string;
  }
  | { readonly kind: 'failed'; readonly error: KeptnApiError | Error; readonly timedOut: boolean };

export interface FetchOptions {
  readonly pageSize?: number;
  readonly maxPages?: number;
  readonly project?: string;
  readonly stage?: string;
  readonly service?: string;
  /** Limit of each page request. */
  readonly timeoutMs: number;
  /** Stops the poll (shutdown). */
  readonly signal?: AbortSignal;
}

type PollingApi = Pick<KeptnApi, 'triggeredEventsPage' | 'pollingUrlFor'>;

/** Fetches every page of one topic and says whether the result is complete. Never rejects. */
export async function fetchOpenEvents(api: PollingApi, topic: string, options: FetchOptions): Promise<TopicPoll> {
  const { pageSize = PAGE_SIZE, maxPages = MAX_PAGES, project, stage, service, timeoutMs, signal } = options;
  const projectFiltered = project !== undefined || api.pollingUrlFor(topic).searchParams.has('project');
  const entries: unknown[] = [];
  const ids = new Set<string>();
  const cursors = new Set<string>();
  let totalCount: number | undefined;
  let nextPageKey: string | undefined;
  let pages = 0;
  for (;;) {
    const timeout = AbortSignal.timeout(timeoutMs);
    let page;
    try {
      page = await api.triggeredEventsPage(topic, {
        pageSize,
        signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
        ...(nextPageKey !== undefined && { nextPageKey }),
        ...(project !== undefined && { project }),
        ...(stage !== undefined && { stage }),
        ...(service !== undefined && { service }),
      });
    } catch (error) {
      // A project-filtered query that matches nothing is a 500 from the 0.8.x control plane (spec §4.8.1).
      if (pages === 0 && projectFiltered && isNoMatchingEvent(error)) {
        return { kind: 'complete', entries: [], ids, totalCount: 0, pages: 1 };
      }
      const timedOut = timeout.aborted && !(signal?.aborted ?? false);
      const failure = timedOut ? new KeptnApiError('ambiguous', `no answer within ${timeoutMs} ms`, { code: 'ETIMEDOUT' })
        : error instanceof Error ? error : new Error(String(error));
      return { kind: 'failed', error: failure, timedOut };
    }
    pages++;
    for (const entry of page.events) {
      const id = idOf(entry);
      if (id === undefined) {
        entries.push(entry);
      } else if (!ids.has(id)) {
        ids.add(id);
        entries.push(entry);
      }
    }
    if (page.totalCount !== undefined) totalCount = Math.max(totalCount ?? 0, page.totalCount);
    if (page.nextPageKey === undefined) break;
    if (cursors.has(page.nextPageKey) || pages >= maxPages) {
      const reason = pages >= maxPages ? `stopped after ${maxPages} pages` : `the control plane handed out the cursor "${page.nextPageKey}" twice`;
      return { kind: 'partial', entries, ids, totalCount, pages, reason };
    }
    cursors.add(page.nextPageKey);
    nextPageKey = page.nextPageKey;
  }
  if (totalCount !== undefined && ids.size < totalCount) {
    return {
      kind: 'partial', entries, ids, totalCount, pages,
      reason: `${ids.size} distinct events listed of the ${totalCount} the control plane counts (its pagination is broken past the first page)`,
    };
  }
  return { kind: 'complete', entries, ids, totalCount, pages };
}

function isNoMatchingEvent(error: unknown): boolean {
  return error instanceof KeptnApiError && error.status === 500 && /no matching event found/i.test(error.message);
}

function idOf(entry: unknown): string | undefined {
  if (typeof entry !== 'object' || entry === null) return undefined;
  const id = (entry as { id?: unknown }).id;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

export interface PollerOptions {
  readonly api: PollingApi;
  /** What to poll: read at the start of every cycle. */
  readonly subscriptions: { readonly current: readonly Subscription[]; readonly settled: boolean; readonly pollable: boolean };
  readonly intervalMs: number;
  readonly store: DedupStore;
  readonly dispatcher: Pick<Dispatcher, 'dispatch' | 'stop' | 'queued' | 'whenQueueEmpty'>;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The readiness condition's setter: called with `true` after the first cycle that fetched every subscription. */
  readonly setReady?: (holds: boolean) => void;
  readonly pageSize?: number;
  /** For tests: a number in [0, 1). */
  readonly random?: () => number;
  /** For tests: waits `ms`; rejects when `signal` aborts. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/** The pipeline as a part of the agent: `start` opens the dedup record and spawns the loop. */
export class Poller implements Part {
  readonly name = 'pipeline';
  readonly #options: PollerOptions;
  readonly #stop = new AbortController();
  readonly #random: () => number;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Per dedup key: the last poll's state, to log changes only ('ok', 'partial', or 'failed: <status or code>'). */
  readonly #states = new Map<string, string>();
  /** Per dedup key: keys of invalid or filtered entries already reported, so they are logged and counted once. */
  readonly #noticed = new Map<string, Set<string>>();
  /** The subscriptions the last cycle polled. */
  #polled: readonly Subscription[] = [];
  /** Whether the records of subscriptions no longer in force were dropped. */
  #pruned = false;
  /** Per dedup key: ids whose dispatch waits for a slot (not sent yet). */
  readonly #waiting = new Map<string, Set<string>>();
  /**
   * Per removed dedup key: the keys that took its record over. A dispatch
   * that fails after the change releases the id there too, so it goes out again.
   */
  readonly #successors = new Map<string, readonly string[]>();
  readonly #dispatches = new Set<Promise<void>>();
  #loop: Promise<void> | undefined;
  #failures = 0;
  #wait: number;
  #ready = false;

  constructor(options: PollerOptions) {
    this.#options = options;
    this.#random = options.random ?? Math.random;
    this.#sleep = options.sleep ?? ((ms, signal) => sleepFor(ms, undefined, { signal }));
    this.#wait = options.intervalMs;
  }

  /** Consecutive cycles with a failed poll. */
  get failures(): number {
    return this.#failures;
  }

  /** The wait before the next cycle. */
  get nextWaitMs(): number {
    return this.#wait;
  }

  async start(): Promise<void> {
    const { store, subscriptions } = this.#options;
    await store.open();
    this.#polled = subscriptions.current;
    if (!subscriptions.settled) {
      // Until the heartbeat answers, the environment's subscriptions stand in for the control plane's
      // of the earlier run: they must not dispatch again what those handed over.
      for (const subscription of this.#polled) {
        const key = dedupKeyOf(subscription);
        for (const earlier of store.topics().filter((topic) => topic.startsWith(`${subscription.event}#`))) {
          // Persisted: if the environment's subscriptions stay in force, the earlier records are pruned.
          for (const id of store.ids(earlier)) {
            store.add(key, id);
            await store.persist(key, id);
          }
        }
      }
    }
    this.#pruneWhenSettled();
    this.#loop = this.#run();
  }

  async stop(deadline: AbortSignal): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    await this.#options.dispatcher.stop(deadline);
    await Promise.all(this.#dispatches);
    await this.#options.store.close();
  }

  /** Runs one cycle: every subscription at once. Resolves true when no poll failed. */
  async pollOnce(): Promise<boolean> {
    if (!this.#options.subscriptions.pollable) {
      // Waiting for the heartbeat to say what is subscribed (see SubscriptionSet.pollable).
      this.#wait = Math.min(this.#options.intervalMs, HOLD_CHECK_MS);
      return true;
    }
    const subscriptions = this.#options.subscriptions.current;
    if (subscriptions !== this.#polled) await this.#follow(subscriptions);
    this.#pruneWhenSettled();
    let retryAfter: number | undefined;
    const results = await Promise.all(subscriptions.map(async (subscription) => {
      const poll = await this.#pollSubscription(subscription);
      if (poll.kind === 'failed' && poll.error instanceof KeptnApiError && poll.error.retryAfterMs !== undefined) {
        retryAfter = Math.max(retryAfter ?? 0, poll.error.retryAfterMs);
      }
      return poll.kind !== 'failed';
    }));
    const ok = results.every(Boolean);
    // Removals are written lazily; releases too: write them once per cycle.
    await this.#options.store.flush();
    if (this.#stop.signal.aborted) return ok;
    this.#failures = ok ? 0 : this.#failures + 1;
    this.#wait = backoffMs(this.#options.intervalMs, this.#failures, this.#random, retryAfter);
    if (ok && !this.#ready) {
      this.#ready = true;
      this.#options.setReady?.(true);
      this.#options.logger.info('first poll cycle completed', { subscriptions: subscriptions.map(describeSubscription) });
    }
    return ok;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        await this.pollOnce();
      } catch (error) {
        // Nothing in a cycle is meant to throw; if something does, the loop must survive it.
        this.#failures++;
        this.#wait = backoffMs(this.#options.intervalMs, this.#failures, this.#random);
        this.#options.logger.error('poll cycle failed unexpectedly', { error: error instanceof Error ? error.message : String(error) });
      }
      if (this.#failures > 0) this.#options.logger.debug('polls fail: waiting before the next cycle', { waitMs: this.#wait, failures: this.#failures });
      try {
        await this.#sleep(this.#wait, signal);
        if (this.#options.dispatcher.queued > 0) await this.#backlogDrained(signal);
      } catch {
        return;
      }
    }
  }

  /** Waits until no dispatch is queued, or a minute; rejects when `signal` aborts. */
  async #backlogDrained(signal: AbortSignal): Promise<void> {
    const bound = new AbortController();
    const { logger, dispatcher } = this.#options;
    if (logger.isDebugEnabled()) logger.debug('dispatches are queued: the next poll waits for them', { queued: dispatcher.queued });
    try {
      await Promise.race([
        dispatcher.whenQueueEmpty(),
        this.#sleep(MAX_BACKOFF_MS, AbortSignal.any([signal, bound.signal])).catch(() => undefined),
        new Promise<never>((_resolve, reject) => {
          if (signal.aborted) reject(new Error('stopped'));
          signal.addEventListener('abort', () => reject(new Error('stopped')), { once: true, signal: bound.signal });
        }),
      ]);
    } finally {
      bound.abort();
    }
  }

  /**
   * Takes on a new set of subscriptions: a new subscription takes over the
   * dedup record of a removed one of the same event type (the same task seen
   * through another subscription), then the records of removed ones are freed.
   *
   * Ids still waiting for a dispatch slot are not taken over: their dispatch
   * is cancelled (its record is gone) and the new subscription dispatches
   * them. Every decision is made before the first `await`, so no dispatch
   * slips between them.
   */
  async #follow(subscriptions: readonly Subscription[]): Promise<void> {
    const { store, logger, metrics } = this.#options;
    const keys = new Set(subscriptions.map(dedupKeyOf));
    const removed = this.#polled.filter((subscription) => !keys.has(dedupKeyOf(subscription)));
    const previousKeys = new Set(this.#polled.map(dedupKeyOf));
    const takenOver: Array<[key: string, id: string]> = [];
    for (const added of subscriptions.filter((subscription) => !previousKeys.has(dedupKeyOf(subscription)))) {
      const to = dedupKeyOf(added);
      for (const predecessor of removed.filter((subscription) => subscription.event === added.event)) {
        const from = dedupKeyOf(predecessor);
        this.#successors.set(from, [...(this.#successors.get(from) ?? []), to]);
        for (const id of store.ids(from)) {
          if (this.#waiting.get(from)?.has(id) === true) continue;
          store.add(to, id);
          takenOver.push([to, id]);
        }
      }
    }
    for (const subscription of removed) {
      this.#states.delete(dedupKeyOf(subscription));
      this.#noticed.delete(dedupKeyOf(subscription));
    }
    this.#polled = subscriptions;
    this.#pruned = false;
    this.#pruneWhenSettled();
    logger.info('polling follows the new subscriptions', { subscriptions: subscriptions.map(describeSubscription) });
    metrics.subscriptions.set(subscriptions.length);
    for (const [key, id] of takenOver) await store.persist(key, id);
  }

  /** Once the subscriptions are known, frees the records of every other subscription. */
  #pruneWhenSettled(): void {
    if (this.#pruned || !this.#options.subscriptions.settled) return;
    this.#pruned = true;
    const dropped = this.#options.store.retainTopics(new Set(this.#polled.map(dedupKeyOf)));
    if (dropped > 0) this.#options.logger.info('forgot the dedup record of subscriptions no longer polled', { ids: dropped });
  }

  async #pollSubscription(subscription: Subscription): Promise<TopicPoll> {
    const { api, metrics, store } = this.#options;
    const topic = subscription.event;
    const key = dedupKeyOf(subscription);
    const filter = subscription.filter;
    const endTimer = metrics.pollDuration.startTimer({ topic });
    const poll = await fetchOpenEvents(api, topic, {
      timeoutMs: pollTimeoutMs(this.#wait),
      signal: this.#stop.signal,
      ...(this.#options.pageSize !== undefined && { pageSize: this.#options.pageSize }),
      ...serverSideFilter(filter),
    });
    endTimer();
    if (this.#stop.signal.aborted) return poll;
    metrics.polls.inc({ topic, outcome: poll.kind === 'complete' ? 'success' : poll.kind === 'partial' ? 'partial' : 'failure' });
    this.#logState(key, topic, poll);
    if (poll.kind === 'failed') return poll;

    const debug = this.#options.logger.isDebugEnabled();
    const noticed = this.#noticed.get(key) ?? new Set<string>();
    const current = new Set<string>();
    let received = 0;
    let deduplicated = 0;
    let filtered = 0;
    let invalid = 0;
    for (const [index, entry] of poll.entries.entries()) {
      // Let the dispatches queued so far go out while the rest of a long list is processed.
      if (index % YIELD_EVERY === YIELD_EVERY - 1) await yieldToEventLoop();
      const id = idOf(entry);
      // Already handed over: it was valid then. Checked first, as it is the common case.
      if (id !== undefined && store.has(key, id)) {
        received++;
        deduplicated++;
        continue;
      }
      const validation = validateCloudEvent(entry, { requireData: false });
      const reason = !validation.ok ? validation.reason
        : validation.event.type !== topic ? `"type" is ${validation.event.type}, not the polled ${topic}` : undefined;
      if (reason !== undefined || !validation.ok) {
        const key = id ?? `~${String(JSON.stringify(entry)).slice(0, 500)}`;
        current.add(key);
        if (!noticed.has(key)) {
          invalid++;
          this.#options.logger.warn('skipping a polled entry that is not a valid Keptn CloudEvent', { topic, eventId: id, reason });
        }
        continue;
      }
      const event = validation.event;
      received++;
      if (!matchesFilter(event, filter)) {
        current.add(event.id);
        if (!noticed.has(event.id)) {
          filtered++;
          if (debug) {
            this.#options.logger.debug('not dispatched: outside the subscription\'s filter', {
              keptnContext: event.shkeptncontext, eventId: event.id, subscription: describeSubscription(subscription),
            });
          }
        }
        continue;
      }
      store.add(key, event.id);
      this.#dispatch(key, withSubscriptionId(event, subscription));
    }
    if (received > 0) metrics.eventsReceived.inc({ topic }, received);
    if (deduplicated > 0) metrics.eventsDeduplicated.inc({ topic }, deduplicated);
    if (filtered > 0) metrics.eventsFiltered.inc({ topic }, filtered);
    if (invalid > 0) metrics.eventsInvalid.inc({ topic }, invalid);

    if (poll.kind === 'complete') {
      const dropped = store.retain(key, poll.ids);
      if (dropped > 0) this.#options.logger.debug('forgot events the control plane no longer lists', { topic, ids: dropped });
      this.#noticed.set(key, current);
    } else {
      // A partial poll cannot tell a closed event from a hidden one: keep both lists, within a bound.
      for (const noticedKey of current) noticed.add(noticedKey);
      this.#noticed.set(key, noticed.size > NOTICED_MAX ? current : noticed);
    }
    return poll;
  }

  /** Dispatches `event` under the dedup record `key`. */
  #dispatch(key: string, event: KeptnCloudEvent): void {
    const { store, dispatcher, logger } = this.#options;
    const topic = event.type;
    if (logger.isDebugEnabled()) logger.debug('new triggered event', { keptnContext: event.shkeptncontext, eventId: event.id, topic });
    const waiting = this.#waiting.get(key) ?? new Set<string>();
    this.#waiting.set(key, waiting);
    waiting.add(event.id);
    const sent = (): void => {
      waiting.delete(event.id);
      if (waiting.size === 0 && this.#waiting.get(key) === waiting) this.#waiting.delete(key);
    };
    const done = dispatcher.dispatch(topic, event, {
      beforeSend: async () => {
        sent();
        // A complete poll dropped it (or its subscription went away) while it waited for a slot: nothing to send.
        if (!store.has(key, event.id)) throw new Error('the control plane no longer lists it');
        await store.persist(key, event.id);
      },
    }).then((outcome) => {
      if (outcome.kind !== 'failed' && outcome.kind !== 'cancelled') return;
      store.release(key, event.id);
      // Only a sent dispatch can have been taken over (one still waiting was not): a cancelled one leaves the successors alone.
      if (outcome.kind === 'failed') for (const successor of this.#successors.get(key) ?? []) store.release(successor, event.id);
    }).catch((error: unknown) => {
      logger.error('dispatch bookkeeping failed', { eventId: event.id, error: error instanceof Error ? error.message : String(error) });
    }).finally(() => {
      sent();
      this.#dispatches.delete(done);
    });
    this.#dispatches.add(done);
  }

  /** Logs a subscription's poll state when it changes: failing (with status and message), partial, back to normal. */
  #logState(key: string, topic: string, poll: TopicPoll): void {
    const { logger, api } = this.#options;
    const previous = this.#states.get(key) ?? 'ok';
    let state: string;
    if (poll.kind === 'failed') {
      const details = poll.error instanceof KeptnApiError ? poll.error.toJSON() : { message: poll.error.message };
      // The state is the kind of failure, not its text: a timeout's text changes as the limit grows.
      state = `failed: ${details.status ?? details.code ?? details.message}`;
      if (state !== previous) {
        logger.warn('cannot poll the control plane: known events are kept, polls back off', {
          topic, url: api.pollingUrlFor(topic).href,
          ...(details.status !== undefined && { status: details.status }),
          ...(details.code !== undefined && { code: details.code }),
          error: details.message,
        });
      }
    } else if (poll.kind === 'partial') {
      state = 'partial';
      if (state !== previous) {
        logger.warn('the control plane listed only part of the open events: none is forgotten until a complete poll', {
          topic, seen: poll.ids.size, ...(poll.totalCount !== undefined && { totalCount: poll.totalCount }), reason: poll.reason,
        });
      }
    } else {
      state = 'ok';
      if (previous.startsWith('failed')) logger.info('polling the control plane works again', { topic });
      else if (previous === 'partial') logger.info('the control plane lists every open event again', { topic });
    }
    this.#states.set(key, state);
  }
}
