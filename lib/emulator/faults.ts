/**
 * Fault switches: make the next calls of a route fail, answer late, or lose
 * their connection, so that tests can show how a client copes with a control
 * plane that misbehaves. Faults are armed per route key and queue up: arming
 * `fail` twice and then `delay` once affects the next three calls in that
 * order. Every switch defaults to one call; `times: Infinity` keeps it on
 * until `clear`.
 */
import type { Reply } from './json-http.ts';
import { ROUTE_KEYS, type RouteKey } from './router.ts';

export type Fault =
  /** Answer `status` with `body` instead of handling the call. */
  | { readonly kind: 'fail'; readonly status: number; readonly body: unknown; readonly contentType: string | undefined; readonly headers: Readonly<Record<string, string>> }
  /** Handle the call at once, but hold the answer back `ms` milliseconds. */
  | { readonly kind: 'delay'; readonly ms: number }
  /** Destroy the connection without an answer, before or after the call takes effect. */
  | { readonly kind: 'drop'; readonly afterEffect: boolean };

export interface FailOptions {
  /** How many calls fail; default 1. */
  readonly times?: number;
  /** Default 500. */
  readonly status?: number;
  /**
   * The answer: an object or array is sent as JSON; a string is sent as is
   * (as `text/html` when it starts with `<`, else `text/plain`), e.g. nginx's
   * HTML 401 page. Default: Keptn's `{"code":<status>,"message":…}`.
   */
  readonly body?: unknown;
  /** Overrides the content type derived from `body`. */
  readonly contentType?: string;
  /** Extra answer headers, e.g. `{"retry-after": "1"}`. */
  readonly headers?: Readonly<Record<string, string>>;
}

export interface DropOptions {
  readonly times?: number;
  /**
   * When true the call takes effect first (an event is recorded, a
   * registration stored) and only then is the connection destroyed: the
   * ambiguous case a client cannot tell from a lost request. Default false.
   */
  readonly afterEffect?: boolean;
}

interface Armed {
  readonly fault: Fault;
  remaining: number;
}

export class Faults {
  readonly #armed = new Map<RouteKey, Armed[]>();

  /** Fails the next calls of `route` with a status and body. */
  fail(route: RouteKey, options: FailOptions = {}): this {
    const status = options.status ?? 500;
    if (!Number.isInteger(status) || status < 100 || status > 599) throw new RangeError(`faults.fail: status must be an HTTP status from 100 to 599, not ${status}`);
    const body = options.body ?? { code: status, message: 'fault injected by the keptn-distributor emulator' };
    return this.#arm(route, options.times, { kind: 'fail', status, body, contentType: options.contentType, headers: options.headers ?? {} });
  }

  /**
   * Holds back the answer of the next calls of `route` by `ms`. The call
   * takes effect at once, so a client that gives up early leaves the
   * control plane changed: what a timeout really means. Closing or stopping
   * the emulator cancels the wait and drops the connection.
   */
  delay(route: RouteKey, ms: number, options: { readonly times?: number } = {}): this {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`faults.delay: ms must be a non-negative number, not ${ms}`);
    return this.#arm(route, options.times, { kind: 'delay', ms });
  }

  /** Destroys the connection of the next calls of `route` without answering. */
  drop(route: RouteKey, options: DropOptions = {}): this {
    return this.#arm(route, options.times, { kind: 'drop', afterEffect: options.afterEffect ?? false });
  }

  /** Disarms the faults of one route, or of all. */
  clear(route?: RouteKey): void {
    if (route === undefined) this.#armed.clear();
    else this.#armed.delete(route);
  }

  /** How many calls of `route` are still to be affected (Infinity for a permanent fault). */
  pending(route: RouteKey): number {
    return (this.#armed.get(route) ?? []).reduce((sum, armed) => sum + armed.remaining, 0);
  }

  /** The fault for the call of `route` that has just arrived, if one is armed; used up by this call. */
  take(route: RouteKey): Fault | undefined {
    const queue = this.#armed.get(route);
    const head = queue?.[0];
    if (queue === undefined || head === undefined) return undefined;
    head.remaining--;
    if (head.remaining <= 0) queue.shift();
    if (queue.length === 0) this.#armed.delete(route);
    return head.fault;
  }

  #arm(route: RouteKey, times: number | undefined, fault: Fault): this {
    if (!(ROUTE_KEYS as readonly string[]).includes(route)) throw new RangeError(`faults: unknown route "${route}"; one of ${ROUTE_KEYS.join(', ')}`);
    const count = times ?? 1;
    if (count !== Infinity && (!Number.isInteger(count) || count < 1)) throw new RangeError(`faults: times must be a positive integer or Infinity, not ${count}`);
    const queue = this.#armed.get(route) ?? [];
    queue.push({ fault, remaining: count });
    this.#armed.set(route, queue);
    return this;
  }
}

/** The answer a `fail` fault gives. */
export function failureReply(fault: Extract<Fault, { kind: 'fail' }>): Reply {
  if (typeof fault.body === 'string') {
    const contentType = fault.contentType ?? (fault.body.trimStart().startsWith('<') ? 'text/html' : 'text/plain');
    return { status: fault.status, text: fault.body, headers: { 'content-type': contentType, ...fault.headers } };
  }
  return {
    status: fault.status,
    body: fault.body,
    headers: { ...(fault.contentType !== undefined && { 'content-type': fault.contentType }), ...fault.headers },
  };
}
