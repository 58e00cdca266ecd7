/**
 * Error-log forwarding (spec §8): a relayed `.finished` event that failed
 * (`data.status` errored or `data.result` fail) and every `sh.keptn.log.error`
 * event become entries of Keptn's log ingestion API, which the Bridge shows
 * beside the integration in the Uniform.
 *
 * Entries are batched and POSTed to `<endpoint>/controlPlane/v1/log` every
 * FLUSH_INTERVAL_MS (the reference waited a minute), retried with backoff while
 * that fails, and flushed once more at shutdown (the reference lost them).
 * At most MAX_PENDING_LOG_ENTRIES wait; beyond that the oldest are dropped,
 * with a warning and a metric. Entries made before the registration id is
 * known wait for it; without registration they carry an empty integration id.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { isRfc3339, type KeptnCloudEvent } from './cloudevents.ts';
import { KeptnApiError, describeFailure, type KeptnApi } from './keptn-api.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';

/** One entry of `POST /v1/log` (spec §8.4): all six fields, always present. */
export interface LogEntry {
  readonly integrationid: string;
  readonly message: string;
  /** RFC 3339: the event's time, or when it was observed. */
  readonly time: string;
  readonly shkeptncontext: string;
  readonly task: string;
  readonly triggeredid: string;
}

/** An entry before it is sent: its integration id may not be known yet. */
export interface PendingLogEntry extends Omit<LogEntry, 'integrationid'> {
  /** The event's own `data.integrationid` (`sh.keptn.log.error`), else undefined: the agent's id, filled in when sent. */
  readonly integrationid: string | undefined;
}

/** What an event means for the error log. */
export type Extraction =
  | { readonly kind: 'none' }
  | { readonly kind: 'entry'; readonly entry: PendingLogEntry }
  | { readonly kind: 'invalid'; readonly reason: string };

export const LOG_ERROR_TYPE = 'sh.keptn.log.error';
/** Time between flushes; the reference's go-utils flushed every minute. */
export const FLUSH_INTERVAL_MS = 10_000;
/** Entries waiting at most; beyond that the oldest are dropped. */
export const MAX_PENDING_LOG_ENTRIES = 1_000;
/** Entries per request, so a backlog never makes one huge body. */
export const MAX_LOG_BATCH = 100;
/** A message longer than this is cut (a tool's whole output does not belong in one log line). */
export const MAX_LOG_MESSAGE_CHARS = 4_096;
/** Longest wait between flush attempts while the log API fails. */
export const MAX_FLUSH_BACKOFF_MS = 60_000;

/**
 * The log entry an event makes, if any (spec §8.2). `now` stamps an event
 * without a valid `time` (the reference sent Go's zero time).
 */
export function extractLogEntry(event: KeptnCloudEvent, now: Date = new Date()): Extraction {
  const isLogError = event.type === LOG_ERROR_TYPE;
  if (!isLogError && !event.type.endsWith('.finished')) return { kind: 'none' };
  const data = event.data;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return { kind: 'invalid', reason: `the data of a ${isLogError ? LOG_ERROR_TYPE : '.finished'} event must be a JSON object` };
  }
  const fields = data as Record<string, unknown>;
  let task: string;
  let integrationid: string | undefined;
  if (isLogError) {
    task = text(fields.task);
    integrationid = typeof fields.integrationid === 'string' && fields.integrationid !== '' ? fields.integrationid : undefined;
  } else {
    if (fields.status !== 'errored' && fields.result !== 'fail') return { kind: 'none' };
    task = taskOf(event.type);
  }
  return {
    kind: 'entry',
    entry: {
      integrationid,
      message: truncate(text(fields.message)),
      time: typeof event.time === 'string' && isRfc3339(event.time) ? event.time : now.toISOString(),
      shkeptncontext: typeof event.shkeptncontext === 'string' ? event.shkeptncontext : '',
      task,
      triggeredid: typeof event.triggeredid === 'string' ? event.triggeredid : '',
    },
  };
}

/** `<task>` of `sh.keptn.event.<task>.finished`; empty for a sequence's `.finished` (more parts). */
function taskOf(type: string): string {
  const parts = type.split('.');
  return parts.length === 5 && parts[0] === 'sh' && parts[1] === 'keptn' && parts[2] === 'event' ? (parts[3] ?? '') : '';
}

function text(value: unknown): string {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function truncate(message: string): string {
  return message.length <= MAX_LOG_MESSAGE_CHARS ? message : `${message.slice(0, MAX_LOG_MESSAGE_CHARS - 1)}…`;
}

/**
 * Wait before the next flush after `failures` failed ones in a row: the
 * interval doubled per failure, jittered down by up to a quarter (`random` in
 * [0, 1)), at most a minute (or the interval, if longer); a `Retry-After` is
 * honoured up to that bound.
 */
export function flushRetryDelay(failures: number, intervalMs: number, retryAfterMs: number | undefined, random: number): number {
  const cap = Math.max(MAX_FLUSH_BACKOFF_MS, intervalMs);
  const backoff = Math.min(cap, intervalMs * 2 ** failures) * (0.75 + 0.25 * random);
  return Math.max(backoff, Math.min(retryAfterMs ?? 0, cap));
}

export interface UniformLogOptions {
  readonly api: Pick<KeptnApi, 'postLogs'>;
  /**
   * The agent's integration id for entries that have none: undefined while
   * the registration has not succeeded yet (entries wait), `''` when the
   * agent does not register.
   */
  readonly integrationId: () => string | undefined;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'logEntries' | 'logEntriesPending'>;
  readonly flushIntervalMs?: number;
  readonly maxPending?: number;
  readonly maxBatch?: number;
  /** Jitter source, for tests. */
  readonly random?: () => number;
}

type FlushResult =
  | { readonly kind: 'idle' | 'waiting' | 'sent' | 'rejected' }
  | { readonly kind: 'failed'; readonly error: unknown };

/**
 * A long-lived part (see `lifecycle.ts`): collects entries from `observe`,
 * flushes them periodically, and once more at `stop`.
 */
export class UniformLog {
  readonly name = 'uniform-log';
  readonly #api: UniformLogOptions['api'];
  readonly #integrationId: () => string | undefined;
  readonly #logger: Logger;
  readonly #metrics: UniformLogOptions['metrics'];
  readonly #flushIntervalMs: number;
  readonly #maxPending: number;
  readonly #maxBatch: number;
  readonly #random: () => number;
  /** Aborted at stop: ends the periodic loop's waits. */
  readonly #stopping = new AbortController();
  /** Aborted when the shutdown deadline passes: ends requests in flight. */
  readonly #deadline = new AbortController();
  readonly #pending: PendingLogEntry[] = [];
  #inFlight = 0;
  #loop: Promise<void> | undefined;
  /** Flushes run one at a time, in order. */
  #flushing: Promise<unknown> = Promise.resolve();
  #failingKey: string | undefined;
  #dropping = false;

  constructor(options: UniformLogOptions) {
    this.#api = options.api;
    this.#integrationId = options.integrationId;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#flushIntervalMs = options.flushIntervalMs ?? FLUSH_INTERVAL_MS;
    this.#maxPending = options.maxPending ?? MAX_PENDING_LOG_ENTRIES;
    this.#maxBatch = Math.min(options.maxBatch ?? MAX_LOG_BATCH, this.#maxPending);
    this.#random = options.random ?? Math.random;
    this.#metrics.logEntriesPending.set(0);
  }

  /** Entries waiting to be sent, in flight included. */
  get pending(): number {
    return this.#pending.length + this.#inFlight;
  }

  /** Takes every event the local server accepted; keeps the log entry it makes, if any. */
  observe(event: KeptnCloudEvent): void {
    const extraction = extractLogEntry(event);
    if (extraction.kind === 'none') return;
    const fields = { eventId: event.id, ...(typeof event.shkeptncontext === 'string' && { keptnContext: event.shkeptncontext }) };
    if (extraction.kind === 'invalid') {
      this.#logger.warn(`no error log entry: ${extraction.reason}`, { ...fields, type: event.type });
      return;
    }
    while (this.#pending.length > 0 && this.pending >= this.#maxPending) {
      this.#pending.shift();
      this.#metrics.logEntries.inc({ outcome: 'dropped' });
      if (!this.#dropping) {
        this.#dropping = true;
        this.#logger.warn(`error log entries dropped: more than ${this.#maxPending} wait to be sent; the oldest go first`);
      }
    }
    this.#pending.push(extraction.entry);
    this.#metrics.logEntriesPending.set(this.pending);
    this.#logger.debug('error log entry', { ...fields, task: extraction.entry.task });
  }

  start(): Promise<void> {
    this.#loop ??= this.#run();
    return Promise.resolve();
  }

  /** Ends the periodic flushes and sends what waits, until sent or the deadline. */
  async stop(deadline: AbortSignal): Promise<void> {
    const onDeadline = (): void => this.#deadline.abort();
    if (deadline.aborted) onDeadline();
    else deadline.addEventListener('abort', onDeadline, { once: true });
    try {
      this.#stopping.abort();
      await this.#loop;
      const result = await this.#serial(() => this.#drain(true));
      const left = this.pending;
      if (left > 0) {
        this.#metrics.logEntries.inc({ outcome: 'lost' }, left);
        this.#pending.length = 0;
        this.#metrics.logEntriesPending.set(0);
        this.#logger.error(`${left} error log entries could not be sent before shutdown and are lost`,
          result.kind === 'failed' ? { error: describeFailure(result.error) } : {});
      }
    } finally {
      deadline.removeEventListener('abort', onDeadline);
    }
  }

  /**
   * Sends what waits, batch by batch, until nothing is left, the id is not
   * known yet, or the log API fails. Resolves to whether nothing waits any more.
   */
  async flush(): Promise<boolean> {
    await this.#serial(() => this.#drain(false));
    return this.pending === 0;
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    let failures = 0;
    let retryAfterMs: number | undefined;
    while (!signal.aborted) {
      const wait = failures === 0 ? this.#flushIntervalMs : flushRetryDelay(failures, this.#flushIntervalMs, retryAfterMs, this.#random());
      try {
        await delay(wait, undefined, { signal });
      } catch {
        return;
      }
      const result = await this.#serial(() => this.#drain(false));
      if (result.kind === 'failed') {
        failures += 1;
        retryAfterMs = result.error instanceof KeptnApiError ? result.error.retryAfterMs : undefined;
      } else {
        failures = 0;
      }
    }
  }

  #serial<T>(task: () => Promise<T>): Promise<T> {
    const next = this.#flushing.then(task);
    this.#flushing = next.catch(() => undefined);
    return next;
  }

  async #drain(final: boolean): Promise<FlushResult> {
    for (;;) {
      const result = await this.#flushBatch(final);
      if (result.kind !== 'sent' && result.kind !== 'rejected') return result;
    }
  }

  /** Sends one batch. `final`: at shutdown, an id still unknown becomes `''` rather than a loss. */
  async #flushBatch(final: boolean): Promise<FlushResult> {
    if (this.#pending.length === 0) return { kind: 'idle' };
    const ownId = this.#integrationId() ?? (final ? '' : undefined);
    if (ownId === undefined) return { kind: 'waiting' };
    const batch = this.#pending.splice(0, this.#maxBatch);
    this.#inFlight = batch.length;
    try {
      await this.#api.postLogs(batch.map((entry) => ({
        integrationid: entry.integrationid ?? ownId,
        message: entry.message,
        time: entry.time,
        shkeptncontext: entry.shkeptncontext,
        task: entry.task,
        triggeredid: entry.triggeredid,
      }) satisfies LogEntry), this.#deadline.signal);
    } catch (error) {
      this.#inFlight = 0;
      if (isFinal(error)) {
        this.#metrics.logEntries.inc({ outcome: 'rejected' }, batch.length);
        this.#metrics.logEntriesPending.set(this.pending);
        this.#logger.error(`the control plane rejected ${batch.length} error log entries`, { error: describeFailure(error) });
        return { kind: 'rejected' };
      }
      this.#pending.unshift(...batch);
      this.#failing(error);
      return { kind: 'failed', error };
    }
    this.#inFlight = 0;
    this.#metrics.logEntries.inc({ outcome: 'sent' }, batch.length);
    this.#metrics.logEntriesPending.set(this.pending);
    this.#dropping = false;
    if (this.#failingKey !== undefined) {
      this.#failingKey = undefined;
      this.#logger.info('error log forwarding works again');
    }
    this.#logger.debug('error log entries sent', { count: batch.length });
    return { kind: 'sent' };
  }

  #failing(error: unknown): void {
    const key = error instanceof KeptnApiError ? String(error.status ?? error.code ?? error.kind) : 'error';
    if (this.#failingKey === key) return;
    this.#failingKey = key;
    const status = error instanceof KeptnApiError ? error.status : undefined;
    const level = status === 401 || status === 403 ? 'error' : 'warn';
    this.#logger.log(level, `error log forwarding failing: ${describeFailure(error).message}`, { error: describeFailure(error), pending: this.pending });
  }
}

/** A 4xx other than 401/403 (a token can be fixed), 408 and 429 will not change when sent again. */
function isFinal(error: unknown): boolean {
  if (!(error instanceof KeptnApiError) || error.kind !== 'status' || error.status === undefined) return false;
  return error.status >= 400 && error.status < 500 && ![401, 403, 408, 429].includes(error.status);
}
