/**
 * Hands polled events to the recipient: structured CloudEvents, at most
 * MAX_CONCURRENT_DISPATCHES at once, each attempt bounded by DISPATCH_TIMEOUT,
 * retried with backoff only when the event surely did not arrive.
 *
 * What an outcome means for the event (the poller acts on it):
 * - `delivered`: 2xx.
 * - `timeout`: the request went out and no answer came (time limit, or the
 *   connection dropped after sending). The recipient may have the event and
 *   still be working on it, so it counts as delivered and is never re-sent:
 *   running a deployment or a test twice is worse than Keptn failing a task
 *   that never started.
 * - `rejected`: a 4xx other than 408/429, or a redirect. Logged; the id is
 *   kept, so a later poll does not hammer the recipient with it.
 * - `failed`: every attempt surely failed (connection refused or reset before
 *   the request went out, DNS, 5xx, 408, 429). The id is released and a later
 *   poll dispatches the event again. A reset on a reused keep-alive connection
 *   before any answer counts as not sent too: it is how a connection the
 *   recipient closed while idle, just as it was reused, fails (Node's
 *   `request.reusedSocket` advice); without the retry such an event was lost.
 *   The price: a recipient that read the whole request on a reused connection
 *   and then crashed gets it again, which is far rarer than that race. A
 *   reset on a fresh connection stays a `timeout`.
 * - `cancelled`: never sent (shutdown, or `beforeSend` refused). Released too.
 *
 * The body is the event's JSON exactly as polled (all attributes, unknown
 * extensions, `time` as written, `data`): the `cloudevents` SDK would invent
 * or reformat attributes, so it is not used here.
 *
 * The POST uses `node:http` with a keep-alive agent, not `got`: measured
 * against a trivial recipient, got reaches about a third of the throughput
 * of a plain `http.request` loop, and dispatch must come within 10 % of it.
 * It also tells exactly what this module needs and got hides: whether the
 * request was completely written (`finish`) before a failure.
 */
import http from 'node:http';
import https from 'node:https';
import { setTimeout as sleepFor } from 'node:timers/promises';
import PQueue from 'p-queue';
import { CLOUDEVENTS_JSON, type KeptnCloudEvent } from './cloudevents.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';

export type DispatchOutcome =
  | { readonly kind: 'delivered'; readonly status: number; readonly attempts: number }
  | { readonly kind: 'timeout'; readonly reason: string; readonly attempts: number }
  | { readonly kind: 'rejected'; readonly status: number; readonly attempts: number }
  | { readonly kind: 'failed'; readonly reason: string; readonly attempts: number }
  | { readonly kind: 'cancelled'; readonly reason: string };

/** Retries after the first attempt, as the reference (4 attempts in all). */
export const DISPATCH_RETRIES = 3;
/** First retry delay; doubles per retry, with jitter (×0.5–1.5): about 0.2 s, 0.4 s, 0.8 s. */
export const DISPATCH_RETRY_BASE_MS = 200;
/** Longest wait before a retry, also for a recipient's `Retry-After`: a slot of the queue is held meanwhile. */
export const DISPATCH_RETRY_MAX_MS = 5_000;

export interface DispatcherOptions {
  readonly recipientUrl: URL;
  /** Limit of one attempt, from connecting to the end of the answer. */
  readonly timeoutMs: number;
  readonly concurrency: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly retries?: number;
  readonly retryBaseMs?: number;
  /** For tests: a number in [0, 1). */
  readonly random?: () => number;
  /** For tests: waits `ms`; rejects when `signal` aborts. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export interface DispatchHooks {
  /**
   * Runs once the dispatch has a slot, right before the first attempt (e.g.
   * recording the id durably). If it throws, nothing is sent: `cancelled`.
   */
  readonly beforeSend?: () => Promise<void>;
}

/** One attempt, classified. */
type Attempt =
  | { readonly kind: 'delivered' | 'rejected'; readonly status: number }
  | { readonly kind: 'timeout'; readonly reason: string }
  | { readonly kind: 'retry'; readonly reason: string; readonly afterMs?: number }
  | { readonly kind: 'stopped'; readonly sent: boolean };

export class Dispatcher {
  readonly #options: DispatcherOptions;
  readonly #queue: PQueue;
  readonly #agent: http.Agent;
  /** Requests on the wire, cut at the shutdown deadline. */
  readonly #requests = new Set<http.ClientRequest>();
  readonly #retries: number;
  readonly #retryBaseMs: number;
  readonly #random: () => number;
  readonly #sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Aborted by `stop`: queued dispatches are dropped and retry waits end. */
  readonly #stopping = new AbortController();
  /** Set when the shutdown deadline passes: requests in flight are cut. */
  #cut = false;
  #inFlight = 0;
  /** The last dispatch failed for good: say so once, and once when the recipient answers again. */
  #recipientFailing = false;
  /** `http.request` options but the length, computed once (parsing the URL per request costs). */
  readonly #requestOptions: http.RequestOptions;
  /** Counter children per topic and outcome: labelling per event costs a hash. */
  readonly #counters = new Map<string, { inc(): void }>();

  constructor(options: DispatcherOptions) {
    this.#options = options;
    this.#retries = options.retries ?? DISPATCH_RETRIES;
    this.#retryBaseMs = options.retryBaseMs ?? DISPATCH_RETRY_BASE_MS;
    this.#random = options.random ?? Math.random;
    this.#sleep = options.sleep ?? ((ms, signal) => sleepFor(ms, undefined, { signal }));
    this.#queue = new PQueue({ concurrency: options.concurrency });
    // An own keep-alive agent, sized to the cap, closed at stop. With `timeout` set, Node lets an
    // idle socket expire before the recipient's announced Keep-Alive timeout, so a reused socket is
    // rarely found closed by the recipient.
    const agentOptions = { keepAlive: true, maxSockets: options.concurrency, scheduling: 'lifo' as const, timeout: 5_000 };
    const url = options.recipientUrl;
    this.#agent = url.protocol === 'https:' ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.#requestOptions = {
      protocol: url.protocol,
      // An IPv6 literal comes bracketed in a URL, and must not be in `hostname`.
      hostname: url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: url.port,
      path: `${url.pathname}${url.search}`,
      method: 'POST',
      agent: this.#agent,
    };
  }

  /** Dispatches waiting for a slot. */
  get queued(): number {
    return this.#queue.size;
  }

  /** Resolves when no dispatch waits for a slot any more (some may still run). */
  whenQueueEmpty(): Promise<void> {
    return this.#queue.onEmpty();
  }

  /** Dispatches holding a slot (sending, or waiting to retry). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Queues the event; resolves with what became of it. Never rejects. */
  async dispatch(topic: string, event: KeptnCloudEvent, hooks: DispatchHooks = {}): Promise<DispatchOutcome> {
    if (this.#stopping.signal.aborted) return this.#report(topic, event, { kind: 'cancelled', reason: 'shutting down' });
    // Not p-queue's `signal`: it would also abandon the dispatches already running, whose outcome matters.
    const outcome = await this.#queue.add(() => this.#run(event, hooks));
    return this.#report(topic, event, outcome);
  }

  /**
   * Stops starting queued dispatches and ends retry waits; waits for the
   * requests in flight until `deadline`, then cuts them (they count as timeouts).
   */
  async stop(deadline: AbortSignal): Promise<void> {
    this.#stopping.abort();
    const idle = this.#queue.onIdle();
    if (!deadline.aborted) {
      const done = new AbortController();
      await Promise.race([idle, new Promise((resolve) => deadline.addEventListener('abort', resolve, { once: true, signal: done.signal }))]);
      done.abort();
    }
    this.#cut = true;
    for (const request of this.#requests) request.destroy(new Error('cut at the shutdown deadline'));
    await idle;
    this.#agent.destroy();
  }

  async #run(event: KeptnCloudEvent, hooks: DispatchHooks): Promise<DispatchOutcome> {
    // Stopping: what still waits in the queue goes through here at once, unsent.
    if (this.#stopping.signal.aborted) return { kind: 'cancelled', reason: 'shutting down' };
    if (hooks.beforeSend !== undefined) {
      try {
        await hooks.beforeSend();
      } catch (error) {
        return { kind: 'cancelled', reason: error instanceof Error ? error.message : String(error) };
      }
      if (this.#stopping.signal.aborted) return { kind: 'cancelled', reason: 'shutting down' };
    }
    const body = JSON.stringify(event);
    this.#inFlight++;
    this.#options.metrics.dispatchesInFlight.inc();
    try {
      for (let attempt = 1; ; attempt++) {
        const result = await this.#attempt(body);
        switch (result.kind) {
          case 'delivered':
          case 'rejected':
            return { kind: result.kind, status: result.status, attempts: attempt };
          case 'timeout':
            return { kind: 'timeout', reason: result.reason, attempts: attempt };
          case 'stopped':
            return result.sent
              ? { kind: 'timeout', reason: 'cut at the shutdown deadline after it was sent', attempts: attempt }
              : { kind: 'cancelled', reason: 'shutting down' };
          case 'retry': {
            if (attempt > this.#retries) return { kind: 'failed', reason: result.reason, attempts: attempt };
            if (this.#stopping.signal.aborted) return { kind: 'failed', reason: `${result.reason}; not retried: shutting down`, attempts: attempt };
            if (this.#options.logger.isDebugEnabled()) this.#options.logger.debug('dispatch attempt failed: retrying', {
              keptnContext: event.shkeptncontext, eventId: event.id, attempt, reason: result.reason,
            });
            try {
              await this.#sleep(this.#retryDelay(attempt, result.afterMs), this.#stopping.signal);
            } catch {
              return { kind: 'failed', reason: `${result.reason}; not retried: shutting down`, attempts: attempt };
            }
          }
        }
      }
    } finally {
      this.#inFlight--;
      this.#options.metrics.dispatchesInFlight.dec();
    }
  }

  /**
   * One POST. Not-sent failures (refused, DNS, reset or timeout before the
   * request was completely written) are retried; after it was written, no
   * answer is ambiguous. Resolves at the answer's status line (its body is
   * drained, unread). Never rejects.
   */
  #attempt(body: string): Promise<Attempt> {
    const { recipientUrl, timeoutMs } = this.#options;
    return new Promise<Attempt>((resolve) => {
      let sent = false;
      let settled = false;
      const request = (recipientUrl.protocol === 'https:' ? https : http).request({
        ...this.#requestOptions,
        // Not the Keptn client's headers: the recipient never gets the token.
        headers: { 'content-type': CLOUDEVENTS_JSON, 'content-length': Buffer.byteLength(body) },
      });
      const settle = (attempt: Attempt): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#requests.delete(request);
        resolve(attempt);
      };
      const timer = setTimeout(() => {
        settle(sent
          ? { kind: 'timeout', reason: `no answer within DISPATCH_TIMEOUT (${timeoutMs} ms)` }
          : { kind: 'retry', reason: `not sent within DISPATCH_TIMEOUT (${timeoutMs} ms)` });
        request.destroy();
      }, timeoutMs);
      this.#requests.add(request);
      request.on('finish', () => { sent = true; });
      request.on('response', (response) => {
        response.resume();
        response.on('error', () => undefined);
        settle(classifyStatus(response.statusCode ?? 0, response.headers['retry-after']));
      });
      request.on('error', (error: NodeJS.ErrnoException) => {
        if (this.#cut) return settle({ kind: 'stopped', sent });
        const code = error.code ?? error.message;
        if (!sent) return settle({ kind: 'retry', reason: `not sent: ${code}` });
        // A pooled connection the recipient closed as it was reused: the request never reached it.
        if (request.reusedSocket && (code === 'ECONNRESET' || code === 'EPIPE')) {
          return settle({ kind: 'retry', reason: `${code} on a reused keep-alive connection before an answer` });
        }
        settle({ kind: 'timeout', reason: `sent, then ${code} before an answer` });
      });
      request.end(body);
    });
  }

  /** Exponential, with jitter (×0.5–1.5), at least what the recipient asked for, capped. */
  #retryDelay(attempt: number, afterMs: number | undefined): number {
    const exponential = this.#retryBaseMs * 2 ** (attempt - 1) * (0.5 + this.#random());
    return Math.min(DISPATCH_RETRY_MAX_MS, Math.max(exponential, afterMs ?? 0));
  }

  #report(topic: string, event: KeptnCloudEvent, outcome: DispatchOutcome): DispatchOutcome {
    const { logger, metrics } = this.#options;
    const key = `${topic}\n${outcome.kind}`;
    let counter = this.#counters.get(key);
    if (counter === undefined) {
      counter = metrics.eventsDispatched.labels({ topic, outcome: outcome.kind });
      this.#counters.set(key, counter);
    }
    counter.inc();
    // The common case, per event: no log line to build unless debug is on.
    if (outcome.kind === 'delivered' && !this.#recipientFailing && !logger.isDebugEnabled()) return outcome;
    const fields = { keptnContext: event.shkeptncontext, eventId: event.id, type: event.type };
    if (outcome.kind === 'failed' && !this.#recipientFailing) {
      this.#recipientFailing = true;
      // What becomes of a failed event is the caller's to say: a later poll sends it again, NATS does not.
      logger.warn('the recipient cannot be reached or fails',
        { recipient: this.#options.recipientUrl.href, reason: outcome.reason });
    } else if (outcome.kind !== 'failed' && outcome.kind !== 'cancelled' && this.#recipientFailing) {
      this.#recipientFailing = false;
      logger.info('the recipient answers again', { recipient: this.#options.recipientUrl.href });
    }
    switch (outcome.kind) {
      case 'delivered':
        logger.debug('dispatched', { ...fields, status: outcome.status, attempts: outcome.attempts });
        break;
      case 'timeout':
        logger.warn('dispatched without an answer: counted as delivered, not sent again', { ...fields, reason: outcome.reason });
        break;
      case 'rejected':
        logger.error('the recipient rejected the event: not sent again while it stays open', { ...fields, status: outcome.status });
        break;
      case 'failed':
        logger.debug('dispatch failed', { ...fields, reason: outcome.reason, attempts: outcome.attempts });
        break;
      case 'cancelled':
        logger.debug('dispatch cancelled: not sent', { ...fields, reason: outcome.reason });
        break;
    }
    return outcome;
  }
}

/** What an answer's status means: 2xx delivered; 5xx, 408, 429 retried; anything else (4xx, 3xx) rejected. */
function classifyStatus(status: number, retryAfter: string | undefined): Attempt {
  if (status >= 200 && status <= 299) return { kind: 'delivered', status };
  if (status >= 500 || status === 408 || status === 429) {
    const afterMs = retryAfterMs(retryAfter);
    return { kind: 'retry', reason: `answered ${status}`, ...(afterMs !== undefined && { afterMs }) };
  }
  return { kind: 'rejected', status };
}

/** `Retry-After` in seconds (an HTTP date is rare from a local service and ignored). */
function retryAfterMs(header: string | undefined): number | undefined {
  if (header === undefined || !/^\d+$/.test(header.trim())) return undefined;
  return Number(header) * 1_000;
}

