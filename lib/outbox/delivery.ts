/**
 * One delivery attempt of a relayed event to the control plane, and what its
 * result means: delivered, retry later, or rejected for good. Classified
 * here, once, from the `KeptnApiError` the API client throws.
 *
 * Retried: connection errors, timeouts, 5xx, 429, 408, 3xx (a redirect is not
 * followed: a configuration to fix), and 401/403 (a wrong or rotated token:
 * the events wait for a fixed token). Final: every other 4xx (400, 404, 413,
 * 415, 422 …). Any 2xx is a success, whatever its body.
 *
 * A `.started` event whose earlier send was ambiguous (the request went out,
 * no answer came back) is not sent again blindly: a 0.8.x control plane
 * closes a task only when exactly one `.started` exists (spec §4.8.4), so a
 * duplicate leaves it open for ever. The datastore is asked first whether a
 * `.started` of the same context, type, `triggeredid` and `source` is there —
 * not the same `id`: the api-service re-creates every event with a new id
 * (spec §7.2.5). Other types are re-sent: a duplicate `.finished` finds its
 * `.started` already removed and is refused by the control plane, harmlessly.
 */
import { KeptnApiError } from '../keptn-api.ts';

/** The calls of the Keptn API client that delivery needs. */
export interface EventSink {
  postEvent(json: string, signal?: AbortSignal): Promise<void>;
  eventsByContext(keptnContext: string, type: string, signal?: AbortSignal): Promise<readonly unknown[]>;
}

/** The attributes of a queued event that delivery and logging look at. */
export interface EventMeta {
  readonly id: string;
  readonly type: string;
  readonly source: string;
  readonly shkeptncontext?: string | undefined;
  readonly triggeredid?: string | undefined;
}

/** Why a retry is needed: the token (held loudly until fixed) or an unavailable control plane. */
export type RetryCause = 'token' | 'unavailable';

export type Delivery =
  | { readonly outcome: 'delivered'; readonly alreadyThere?: true }
  | { readonly outcome: 'retry'; readonly cause: RetryCause; readonly reason: string; readonly ambiguous: boolean; readonly retryAfterMs?: number }
  | { readonly outcome: 'rejected'; readonly status: number | undefined; readonly reason: string };

/** True for an event whose duplicate would do harm: a `.started` with a context to look it up by. */
export function needsArrivalCheck(event: EventMeta): boolean {
  return event.type.endsWith('.started') && typeof event.shkeptncontext === 'string' && event.shkeptncontext !== '';
}

/**
 * Sends one event. With `uncertain` (an earlier send of this `.started` was
 * ambiguous, or it comes from the journal of a previous run) the datastore is
 * asked first; `onCheck` reports what it said, for logging.
 */
export async function deliver(sink: EventSink, json: string, event: EventMeta, options: {
  readonly uncertain: boolean;
  /** False when there is no datastore to ask (no KEPTN_API_ENDPOINT): the event is sent, with a warning. */
  readonly canCheck: boolean;
  readonly signal: AbortSignal;
  readonly onCheck?: (result: 'found' | 'absent' | 'unchecked', detail?: string) => void;
}): Promise<Delivery> {
  if (options.uncertain && needsArrivalCheck(event) && !options.canCheck) {
    options.onCheck?.('unchecked', 'no KEPTN_API_ENDPOINT: the datastore cannot be asked');
  } else if (options.uncertain && needsArrivalCheck(event)) {
    let found: boolean;
    try {
      found = await arrived(sink, event, options.signal);
      options.onCheck?.(found ? 'found' : 'absent');
    } catch (error) {
      const result = classify(error);
      // A datastore that refuses the question (no such route: 404) will not learn to answer it: send.
      if (result.outcome === 'rejected') {
        options.onCheck?.('unchecked', result.reason);
        found = false;
      } else {
        return result;
      }
    }
    if (found) return { outcome: 'delivered', alreadyThere: true };
  }
  try {
    await sink.postEvent(json, options.signal);
    return { outcome: 'delivered' };
  } catch (error) {
    return classify(error);
  }
}

/** Does the datastore hold this `.started` already (same type, `triggeredid` and `source`)? */
async function arrived(sink: EventSink, event: EventMeta, signal: AbortSignal): Promise<boolean> {
  const stored = await sink.eventsByContext(event.shkeptncontext!, event.type, signal);
  const triggeredid = event.triggeredid ?? '';
  return stored.some((item) => typeof item === 'object' && item !== null
    && (item as Record<string, unknown>).type === event.type
    && ((item as Record<string, unknown>).triggeredid ?? '') === triggeredid
    && (item as Record<string, unknown>).source === event.source);
}

/** What a failed call means for the event. */
export function classify(error: unknown): Delivery {
  if (!(error instanceof KeptnApiError)) {
    return { outcome: 'retry', cause: 'unavailable', reason: error instanceof Error ? error.message : String(error), ambiguous: true };
  }
  const retryAfter = error.retryAfterMs !== undefined ? { retryAfterMs: error.retryAfterMs } : {};
  if (error.kind === 'unreachable') return { outcome: 'retry', cause: 'unavailable', reason: error.message, ambiguous: false };
  if (error.kind === 'ambiguous') return { outcome: 'retry', cause: 'unavailable', reason: error.message, ambiguous: true };
  const status = error.status ?? 0;
  // A 2xx whose body the client could not read as JSON: the control plane took the event.
  if (status >= 200 && status <= 299) return { outcome: 'delivered' };
  if (status === 401 || status === 403) return { outcome: 'retry', cause: 'token', reason: error.message, ambiguous: false, ...retryAfter };
  if (status >= 500 || status === 429 || status === 408 || (status >= 300 && status <= 399)) {
    return { outcome: 'retry', cause: 'unavailable', reason: error.message, ambiguous: false, ...retryAfter };
  }
  return { outcome: 'rejected', status: error.status, reason: error.message };
}
