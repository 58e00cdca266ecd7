/**
 * The outbox: relayed events wait here until the control plane has them.
 *
 * Order: one FIFO lane per Keptn context (`shkeptncontext`); only the head of
 * a lane is ever in flight, so a `.finished` never overtakes its `.started`.
 * An event without a context gets a lane of its own (keyed by its id): the
 * control plane gives each such event a new context, so there is no order
 * among them to keep, and one must not hold up another.
 *
 * Concurrency: up to `concurrency` lanes are sent at once, so a slow answer
 * for one context does not block the others. The default, 64, is above what a
 * busy Keptn-service posts at once: with fewer lanes than concurrent posters,
 * a burst waits here in a queue (measured in bench/: 16 lanes against 32
 * posters added over a second to every relay).
 *
 * Failures: a retryable failure (see delivery.ts) sends its lane to the back
 * with exponential backoff and jitter (honouring `Retry-After`), and closes a
 * global gate: while the control plane fails, only one request at a time
 * probes it, after the gate's own backoff, instead of every lane hammering a
 * control plane that is down, rate-limiting or refusing the token. The first
 * success opens the gate again. An event still failing once it is older than
 * the age cap goes to the dead letters, as does one the control plane refuses
 * for good.
 *
 * Bounds: at most `maxEvents` events and `maxBytes` of JSON are held; past
 * that, `add` says "full" and the relay answers 503 with Retry-After, so
 * nothing is dropped silently.
 *
 * A 401/403 is loud: one error line when it starts, a readiness condition
 * while it lasts, a metric for every refused attempt, one line when a
 * delivery succeeds again.
 */
import { setMaxListeners } from 'node:events';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics.ts';
import type { Readiness } from '../readiness.ts';
import { validateCloudEvent } from '../cloudevents.ts';
import { deliver, needsArrivalCheck, type Delivery, type EventMeta, type EventSink } from './delivery.ts';
import type { DeadLetters } from './dead-letter.ts';
import type { OutboxStore, StoredEvent } from './store.ts';

/** Time, for deterministic tests. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  // Not unref'ed: while events wait for a retry, the process must not exit as if idle.
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** Lanes in flight at once, by default. */
export const OUTBOX_CONCURRENCY = 64;

export interface OutboxOptions {
  readonly sink: EventSink;
  readonly store: OutboxStore;
  readonly deadLetters: DeadLetters;
  readonly logger: Logger;
  readonly metrics?: Pick<Metrics, 'relays' | 'outboxDepth'>;
  readonly readiness?: Readiness;
  /** OUTBOX_MAX_AGE: how long an event is retried before it is dead-lettered. */
  readonly maxAgeMs: number;
  /** False when the datastore cannot be asked whether a `.started` arrived (no KEPTN_API_ENDPOINT). */
  readonly canCheckArrival: boolean;
  /** Lanes in flight at once. */
  readonly concurrency?: number;
  readonly maxEvents?: number;
  readonly maxBytes?: number;
  /** Backoff: first delay and cap. */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** How long after an ambiguous `.started` the datastore is asked (it learns of events asynchronously). */
  readonly arrivalCheckDelayMs?: number;
  /** The Retry-After the relay suggests when the outbox is full. */
  readonly fullRetryAfterMs?: number;
  readonly clock?: Clock;
  readonly random?: () => number;
}

export type AddResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'full' | 'closed' | 'store'; readonly message: string; readonly retryAfterMs: number };

interface Entry {
  readonly seq: number;
  readonly acceptedAt: number;
  readonly json: string;
  readonly bytes: number;
  readonly meta: EventMeta;
  /** An earlier send may have arrived: ask before sending again (`.started` only). */
  uncertain: boolean;
  attempts: number;
}

interface Lane {
  readonly key: string;
  readonly entries: Entry[];
  busy: boolean;
  timer: unknown;
}

type State = 'new' | 'running' | 'draining' | 'closed';

export const DEFAULT_MAX_EVENTS = 10_000;
export const DEFAULT_MAX_BYTES = 64 * 1024 * 1024;
const RETRY_AFTER_CAP_MS = 60 * 60 * 1_000;

export class Outbox {
  readonly #sink: EventSink;
  readonly #store: OutboxStore;
  readonly #deadLetters: DeadLetters;
  readonly #logger: Logger;
  readonly #metrics: OutboxOptions['metrics'];
  readonly #setTokenReady: ((holds: boolean, reason?: string) => void) | undefined;
  readonly #maxAgeMs: number;
  readonly #canCheckArrival: boolean;
  readonly #concurrency: number;
  readonly #maxEvents: number;
  readonly #maxBytes: number;
  readonly #backoff: { readonly initialMs: number; readonly maxMs: number };
  readonly #arrivalCheckDelayMs: number;
  readonly #fullRetryAfterMs: number;
  readonly #clock: Clock;
  readonly #random: () => number;

  readonly #lanes = new Map<string, Lane>();
  /** Lanes whose head may be sent now, in turn. */
  #ready: Lane[] = [];
  #inFlight = 0;
  #count = 0;
  #bytes = 0;
  #nextSeq = 1;
  #state: State = 'new';
  #gateFailures = 0;
  #gateUntil = 0;
  #gateTimer: unknown;
  #tokenRejected = false;
  #full = false;
  readonly #abort = new AbortController();
  #idleWaiters: Array<() => void> = [];
  #settledWaiters: Array<() => void> = [];

  constructor(options: OutboxOptions) {
    this.#sink = options.sink;
    this.#store = options.store;
    this.#deadLetters = options.deadLetters;
    this.#logger = options.logger.child({ component: 'outbox' });
    this.#metrics = options.metrics;
    this.#setTokenReady = options.readiness?.declare('outbox', 'the control plane rejects the API token (401)');
    this.#setTokenReady?.(true);
    this.#maxAgeMs = options.maxAgeMs;
    this.#canCheckArrival = options.canCheckArrival;
    this.#concurrency = options.concurrency ?? OUTBOX_CONCURRENCY;
    this.#maxEvents = options.maxEvents ?? DEFAULT_MAX_EVENTS;
    this.#maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
    this.#backoff = options.backoff ?? { initialMs: 100, maxMs: 60_000 };
    this.#arrivalCheckDelayMs = options.arrivalCheckDelayMs ?? 5_000;
    this.#fullRetryAfterMs = options.fullRetryAfterMs ?? 5_000;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    // Every send in flight listens on the one abort signal.
    setMaxListeners(this.#concurrency + 10, this.#abort.signal);
  }

  /** Events accepted and not yet delivered, rejected or dead-lettered. */
  get depth(): number {
    return this.#count;
  }

  /** Opens the store, takes over what a previous run left, and starts delivering. */
  async start(): Promise<void> {
    if (this.#state !== 'new') return;
    const { events, nextSeq } = await this.#store.open();
    this.#nextSeq = nextSeq;
    this.#state = 'running';
    for (const stored of events) {
      const meta = metaOf(stored.json);
      if (meta === undefined) {
        this.#logger.error('dropping an entry of the outbox journal that is not a valid event', { seq: stored.seq });
        this.#store.remove(stored.seq);
        continue;
      }
      // Its send may have been under way when the previous run ended.
      this.#enqueue(this.#entry(stored, meta, needsArrivalCheck(meta)));
    }
    if (events.length > 0) this.#logger.info('resuming delivery of relayed events left by the previous run', { events: this.#count, store: this.#store.location });
    this.#updateDepth();
    this.#pump();
  }

  /**
   * Queues one validated event. Resolves once it is stored (on disk with
   * STATE_DIR): only then may the relay answer 202.
   */
  async add(meta: EventMeta, json: string): Promise<AddResult> {
    if (this.#state !== 'running') {
      return { ok: false, reason: 'closed', message: 'the agent is shutting down', retryAfterMs: this.#fullRetryAfterMs };
    }
    const bytes = Buffer.byteLength(json);
    if (this.#count >= this.#maxEvents || this.#bytes + bytes > this.#maxBytes) {
      if (!this.#full) {
        this.#full = true;
        this.#logger.warn('the outbox is full: the relay answers 503 until the control plane takes events again', {
          events: this.#count, bytes: this.#bytes, maxEvents: this.#maxEvents, maxBytes: this.#maxBytes,
        });
      }
      this.#metrics?.relays.inc({ outcome: 'refused' });
      return {
        ok: false, reason: 'full', retryAfterMs: this.#fullRetryAfterMs,
        message: `the outbox is full (${this.#count} events waiting for the control plane): retry later`,
      };
    }
    const stored: StoredEvent = { seq: this.#nextSeq++, acceptedAt: this.#clock.now(), json };
    // Reserved before the store is awaited, so concurrent adds respect the bound.
    this.#count++;
    this.#bytes += bytes;
    try {
      await this.#store.append(stored);
    } catch (error) {
      this.#count--;
      this.#bytes -= bytes;
      return {
        ok: false, reason: 'store', retryAfterMs: this.#fullRetryAfterMs,
        message: `the event could not be stored: ${error instanceof Error ? error.message : String(error)}`,
      };
    }
    this.#count--;
    this.#bytes -= bytes;
    this.#enqueue(this.#entry(stored, meta, false));
    this.#updateDepth();
    this.#pump();
    return { ok: true };
  }

  /**
   * The sink says it can take events again (NATS is connected again): every
   * waiting event is tried now instead of after its backoff, which after a
   * long outage can be a minute. The gate still lets one probe go first.
   */
  wake(): void {
    if (this.#state !== 'running' && this.#state !== 'draining') return;
    this.#gateUntil = 0;
    if (this.#gateTimer !== undefined) {
      this.#clock.clearTimeout(this.#gateTimer);
      this.#gateTimer = undefined;
    }
    for (const lane of this.#lanes.values()) {
      if (lane.timer === undefined) continue;
      this.#clock.clearTimeout(lane.timer);
      lane.timer = undefined;
      this.#ready.push(lane);
    }
    this.#pump();
  }

  /** Resolves when nothing is waiting for delivery (at once if nothing is). */
  idle(): Promise<void> {
    if (this.#count === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /**
   * Shutdown: takes no more events, keeps delivering until the outbox is
   * empty or `deadline` aborts, then aborts what is in flight and closes the
   * store. Returns how many events were left (on disk with STATE_DIR).
   */
  async drain(deadline: AbortSignal): Promise<number> {
    if (this.#state === 'closed') return this.#count;
    if (this.#state === 'new') {
      this.#state = 'closed';
      return 0;
    }
    this.#state = 'draining';
    if (this.#count > 0) {
      this.#logger.info('delivering the outbox before shutdown', { events: this.#count });
      await Promise.race([this.idle(), aborted(deadline)]);
    }
    this.#state = 'closed';
    this.#abort.abort();
    this.#clock.clearTimeout(this.#gateTimer);
    for (const lane of this.#lanes.values()) this.#clock.clearTimeout(lane.timer);
    while (this.#inFlight > 0) await new Promise<void>((resolve) => this.#settledWaiters.push(resolve));
    await this.#store.close();
    const left = this.#count;
    if (left > 0 && this.#store.durable) {
      this.#logger.warn('relayed events not delivered before shutdown stay in the outbox journal and are delivered after the restart', {
        events: left, store: this.#store.location,
      });
    } else if (left > 0) {
      this.#logger.error('relayed events not delivered before shutdown are lost: without STATE_DIR the outbox lives in memory only', { events: left });
    }
    return left;
  }

  #entry(stored: StoredEvent, meta: EventMeta, uncertain: boolean): Entry {
    return { seq: stored.seq, acceptedAt: stored.acceptedAt, json: stored.json, bytes: Buffer.byteLength(stored.json), meta, uncertain, attempts: 0 };
  }

  #enqueue(entry: Entry): void {
    const key = entry.meta.shkeptncontext ? `context:${entry.meta.shkeptncontext}` : `event:${entry.meta.id}:${entry.seq}`;
    let lane = this.#lanes.get(key);
    if (lane === undefined) {
      lane = { key, entries: [], busy: false, timer: undefined };
      this.#lanes.set(key, lane);
    }
    lane.entries.push(entry);
    this.#count++;
    this.#bytes += entry.bytes;
    if (lane.entries.length === 1 && !lane.busy && lane.timer === undefined) this.#ready.push(lane);
  }

  /** Starts as many sends as the gate and the concurrency allow. */
  #pump(): void {
    if (this.#state === 'closed' || this.#state === 'new') return;
    const now = this.#clock.now();
    if (this.#gateFailures > 0 && now < this.#gateUntil) {
      if (this.#gateTimer === undefined) {
        this.#gateTimer = this.#clock.setTimeout(() => {
          this.#gateTimer = undefined;
          this.#pump();
        }, this.#gateUntil - now);
      }
      return;
    }
    const limit = this.#gateFailures > 0 ? 1 : this.#concurrency;
    while (this.#inFlight < limit && this.#ready.length > 0) {
      const lane = this.#ready.shift()!;
      void this.#attempt(lane);
    }
  }

  async #attempt(lane: Lane): Promise<void> {
    const entry = lane.entries[0]!;
    lane.busy = true;
    this.#inFlight++;
    const probe = this.#gateFailures > 0;
    // The event's child logger, built only when a line is written: a child per delivery is a measurable cost.
    let child: Logger | undefined;
    const log = (): Logger => child ??= this.#logger.child({
      eventId: entry.meta.id, type: entry.meta.type, ...(entry.meta.shkeptncontext && { keptnContext: entry.meta.shkeptncontext }),
    });
    try {
      const result = await deliver(this.#sink, entry.json, entry.meta, {
        uncertain: entry.uncertain,
        canCheck: this.#canCheckArrival,
        signal: this.#abort.signal,
        onCheck: (check, detail) => {
          if (check === 'found') log().info('an earlier, unanswered send of this .started event did arrive: not sending it again');
          else if (check === 'absent') log().info('an earlier, unanswered send of this .started event did not arrive: sending it again');
          else log().warn('cannot ask the control plane whether an earlier, unanswered send of this .started event arrived: sending it again', { reason: detail });
        },
      });
      await this.#settle(lane, entry, result, probe, log);
    } catch (error) {
      // Only the dead-letter file can fail here; the event stays queued and is retried.
      log().error('cannot record a dead letter; the event stays in the outbox', { error: error instanceof Error ? error.message : String(error) });
      this.#retryLater(lane, entry, { outcome: 'retry', cause: 'unavailable', reason: 'dead letter not written', ambiguous: false }, false);
    } finally {
      lane.busy = false;
      this.#inFlight--;
      if (this.#inFlight === 0) {
        const waiters = this.#settledWaiters;
        this.#settledWaiters = [];
        for (const resolve of waiters) resolve();
      }
      this.#pump();
    }
  }

  async #settle(lane: Lane, entry: Entry, result: Delivery, probe: boolean, log: () => Logger): Promise<void> {
    switch (result.outcome) {
      case 'delivered':
        if (this.#logger.isDebugEnabled()) log().debug(result.alreadyThere ? 'relayed event was already at the control plane' : 'relayed event delivered');
        this.#metrics?.relays.inc({ outcome: 'delivered' });
        this.#controlPlaneAnswered(true);
        this.#finish(lane, entry);
        return;
      case 'rejected':
        log().error('the control plane refused a relayed event for good', { status: result.status, reason: result.reason, deadLetters: this.#deadLetters.location });
        this.#metrics?.relays.inc({ outcome: 'failed' });
        this.#controlPlaneAnswered(false);
        await this.#deadLetters.write({
          json: entry.json, acceptedAt: entry.acceptedAt, reason: `refused by the control plane: ${result.reason}`,
          ...(result.status !== undefined && { status: result.status }),
        });
        this.#finish(lane, entry);
        return;
      case 'retry':
        this.#metrics?.relays.inc({ outcome: result.cause === 'token' ? 'token-rejected' : 'retried' });
        if (this.#state === 'closed') {
          // Aborted at the shutdown deadline: it stays (in the journal, with STATE_DIR).
          if (result.ambiguous && needsArrivalCheck(entry.meta)) entry.uncertain = true;
          return;
        }
        this.#failing(result, probe);
        if (this.#clock.now() - entry.acceptedAt >= this.#maxAgeMs) {
          log().error('a relayed event could not be delivered within the age cap (OUTBOX_MAX_AGE): dead-lettered', {
            reason: result.reason, attempts: entry.attempts + 1, deadLetters: this.#deadLetters.location,
          });
          this.#metrics?.relays.inc({ outcome: 'dead-lettered' });
          await this.#deadLetters.write({ json: entry.json, acceptedAt: entry.acceptedAt, reason: `not delivered within the age cap: ${result.reason}` });
          this.#finish(lane, entry);
          return;
        }
        this.#retryLater(lane, entry, result, true);
        if (this.#logger.isDebugEnabled()) log().debug('delivery failed; retrying', { reason: result.reason, attempts: entry.attempts });
        return;
    }
  }

  /** Puts the lane back after its own backoff. */
  #retryLater(lane: Lane, entry: Entry, result: Delivery & { outcome: 'retry' }, countAttempt: boolean): void {
    if (countAttempt) entry.attempts++;
    if (result.ambiguous && needsArrivalCheck(entry.meta)) entry.uncertain = true;
    if (this.#state === 'closed') return;
    let delay = this.#delay(Math.max(1, entry.attempts), result.retryAfterMs);
    if (entry.uncertain && result.ambiguous) delay = Math.max(delay, this.#arrivalCheckDelayMs);
    lane.timer = this.#clock.setTimeout(() => {
      lane.timer = undefined;
      this.#ready.push(lane);
      this.#pump();
    }, delay);
  }

  /** Closes the gate: only one probe at a time until a success. */
  #failing(result: Delivery & { outcome: 'retry' }, probe: boolean): void {
    if (result.cause === 'token' && !this.#tokenRejected) {
      this.#tokenRejected = true;
      this.#setTokenReady?.(false, `the control plane rejects the API token (${result.reason})`);
      this.#logger.error('the control plane rejects the API token (KEPTN_API_TOKEN): relayed events are held, not dropped, until it is fixed', {
        reason: result.reason, waiting: this.#count,
      });
    } else if (result.cause === 'unavailable' && this.#gateFailures === 0 && !this.#tokenRejected) {
      this.#logger.warn('cannot deliver relayed events to the control plane: retrying with backoff', { reason: result.reason, waiting: this.#count });
    }
    // Sends that started before the gate closed do not push it further out; only failed probes do.
    if (this.#gateFailures === 0 || probe) {
      this.#gateFailures++;
      this.#gateUntil = this.#clock.now() + this.#delay(this.#gateFailures, result.retryAfterMs);
    }
  }

  /** The control plane answered (`delivered`: and took the event): the gate opens. */
  #controlPlaneAnswered(delivered: boolean): void {
    if (delivered && this.#tokenRejected) {
      this.#tokenRejected = false;
      this.#setTokenReady?.(true);
      this.#logger.info('the control plane accepts the API token again: delivering relayed events', { waiting: this.#count });
    } else if (this.#gateFailures > 0 && !this.#tokenRejected) {
      this.#logger.info('the control plane takes relayed events again', { waiting: this.#count });
    }
    if (this.#tokenRejected) return;
    this.#gateFailures = 0;
    this.#gateUntil = 0;
    if (this.#gateTimer !== undefined) {
      this.#clock.clearTimeout(this.#gateTimer);
      this.#gateTimer = undefined;
    }
  }

  #finish(lane: Lane, entry: Entry): void {
    lane.entries.shift();
    this.#store.remove(entry.seq);
    this.#count--;
    this.#bytes -= entry.bytes;
    if (lane.entries.length > 0) this.#ready.push(lane);
    else this.#lanes.delete(lane.key);
    this.#updateDepth();
    if (this.#full && this.#count < this.#maxEvents && this.#bytes < this.#maxBytes) {
      this.#full = false;
      this.#logger.info('the outbox has room again', { events: this.#count });
    }
    if (this.#count === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** Exponential backoff with jitter (half fixed, half random) and a cap; a Retry-After wins. */
  #delay(attempt: number, retryAfterMs: number | undefined): number {
    if (retryAfterMs !== undefined) return Math.min(Math.max(retryAfterMs, this.#backoff.initialMs), RETRY_AFTER_CAP_MS);
    const base = Math.min(this.#backoff.maxMs, this.#backoff.initialMs * 2 ** Math.min(attempt - 1, 30));
    return base / 2 + this.#random() * (base / 2);
  }

  #updateDepth(): void {
    this.#metrics?.outboxDepth.set(this.#count);
  }
}

/** The attributes delivery looks at, from a stored event's JSON. */
function metaOf(json: string): EventMeta | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
  const validation = validateCloudEvent(raw, { requireData: false });
  return validation.ok ? metaFromEvent(validation.event) : undefined;
}

/** Only what delivery needs, so the parsed event itself is not kept. */
export function metaFromEvent(event: { id: string; type: string; source: string; shkeptncontext?: string | undefined; triggeredid?: string | undefined }): EventMeta {
  return {
    id: event.id, type: event.type, source: event.source,
    ...(event.shkeptncontext !== undefined && { shkeptncontext: event.shkeptncontext }),
    ...(event.triggeredid !== undefined && { triggeredid: event.triggeredid }),
  };
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
