/** Deterministic stand-ins for the outbox's edges: time, and the Keptn API. */
import { setImmediate as turn } from 'node:timers/promises';
import type { Clock } from '../../lib/outbox/outbox.ts';
import type { EventSink } from '../../lib/outbox/delivery.ts';
import { KeptnApiError } from '../../lib/keptn-api.ts';

/** A clock whose timers fire only when the test advances it. */
export class FakeClock implements Clock {
  #now = Date.parse('2021-07-26T10:00:00Z');
  #nextId = 0;
  readonly #timers = new Map<number, { at: number; callback: () => void }>();
  /** Every delay asked for, in order. */
  readonly requested: number[] = [];

  now(): number {
    return this.#now;
  }

  setTimeout(callback: () => void, ms: number): unknown {
    const id = ++this.#nextId;
    this.requested.push(ms);
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Delays of the pending timers, soonest first. */
  pending(): number[] {
    return [...this.#timers.values()].map((timer) => timer.at - this.#now).sort((a, b) => a - b);
  }

  /** Moves time forward, firing due timers in order and letting the promises they start settle. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await settle();
      const due = [...this.#timers.entries()].filter(([, timer]) => timer.at <= target).sort((a, b) => a[1].at - b[1].at)[0];
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].callback();
    }
    this.#now = target;
    await settle();
  }
}

/** Lets every pending promise chain run (several event-loop turns). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await turn();
}

type Answer = 'ok' | KeptnApiError | Promise<void>;

/**
 * A Keptn API stand-in: records each POST and answers from `answers` (one per
 * call, in order; 'ok' once they run out), or from `answer(json)` when set.
 */
export class FakeSink implements EventSink {
  readonly posted: string[] = [];
  readonly queries: Array<{ keptnContext: string; type: string }> = [];
  answers: Answer[] = [];
  answer: ((json: string, signal?: AbortSignal) => Answer) | undefined;
  /** What the datastore holds, or the error it answers. */
  datastore: unknown[] | KeptnApiError = [];

  postEvent(json: string, signal?: AbortSignal): Promise<void> {
    this.posted.push(json);
    const answer = this.answer?.(json, signal) ?? this.answers.shift() ?? 'ok';
    if (answer === 'ok') return Promise.resolve();
    if (answer instanceof KeptnApiError) return Promise.reject(answer);
    return answer;
  }

  eventsByContext(keptnContext: string, type: string): Promise<readonly unknown[]> {
    this.queries.push({ keptnContext, type });
    return this.datastore instanceof KeptnApiError ? Promise.reject(this.datastore) : Promise.resolve(this.datastore);
  }

  /** The ids posted, in order. */
  ids(): string[] {
    return this.posted.map((json) => (JSON.parse(json) as { id: string }).id);
  }
}

export const status = (code: number, message = `${code}`, retryAfterMs?: number): KeptnApiError =>
  new KeptnApiError('status', message, { status: code, ...(retryAfterMs !== undefined && { retryAfterMs }) });
export const refused = (): KeptnApiError => new KeptnApiError('unreachable', 'connect ECONNREFUSED 127.0.0.1:1', { code: 'ECONNREFUSED' });
export const noAnswer = (): KeptnApiError => new KeptnApiError('ambiguous', 'Timeout awaiting \'request\' for 30000ms', { code: 'ETIMEDOUT' });

/** A Keptn event as the relay would queue it. */
export function keptnEvent(id: string, type: string, context: string | undefined, extra: Record<string, unknown> = {}): {
  meta: { id: string; type: string; source: string; shkeptncontext?: string; triggeredid?: string }; json: string;
} {
  const event = {
    specversion: '1.0', id, source: 'helm-service', type, time: '2021-07-26T10:00:00.000Z',
    ...(context !== undefined && { shkeptncontext: context }), triggeredid: `triggered-${context ?? id}`,
    data: { project: 'sockshop', stage: 'dev', service: 'carts' }, ...extra,
  };
  return {
    meta: { id, type, source: event.source, triggeredid: event.triggeredid, ...(context !== undefined && { shkeptncontext: context }) },
    json: JSON.stringify(event),
  };
}
