/**
 * The outbox's sink in NATS mode: publishes each relayed event on the
 * subject equal to its `type`, as the reference does (spec §11.2), and
 * counts it delivered once the server confirmed it has everything published
 * so far (a flush: one PING answered by a PONG).
 *
 * While the connection is down nothing is published: the client would
 * buffer the event and send it after reconnecting, and the outbox, not
 * knowing, would send it again. Instead the send fails as `unreachable`
 * (nothing was written), and the outbox keeps the event (on disk with
 * STATE_DIR) and retries with backoff until NATS is back. A publish whose
 * confirmation does not come is `ambiguous`: it may have reached the
 * server, and the outbox sends it again (a duplicate rather than a loss).
 *
 * Core NATS keeps nothing: an event published while no one subscribes to
 * its subject is gone, as with the reference.
 */
import { KeptnApiError } from '../keptn-api.ts';
import type { NatsLink } from '../nats/link.ts';
import type { EventSink } from './delivery.ts';

/** How long the server may take to confirm a publish. */
export const PUBLISH_CONFIRM_TIMEOUT_MS = 5_000;

export interface NatsSinkOptions {
  readonly link: Pick<NatsLink, 'connected' | 'connection'>;
  readonly confirmTimeoutMs?: number;
}

export class NatsSink implements EventSink {
  readonly #link: NatsSinkOptions['link'];
  readonly #confirmTimeoutMs: number;

  constructor({ link, confirmTimeoutMs = PUBLISH_CONFIRM_TIMEOUT_MS }: NatsSinkOptions) {
    this.#link = link;
    this.#confirmTimeoutMs = confirmTimeoutMs;
  }

  async postEvent(json: string, signal?: AbortSignal): Promise<void> {
    const connection = this.#link.connection;
    if (signal?.aborted) throw new KeptnApiError('unreachable', 'aborted', { code: 'ABORT_ERR' });
    if (!this.#link.connected || connection === undefined) {
      throw new KeptnApiError('unreachable', 'not connected to NATS', { code: 'ENOTCONN' });
    }
    // The outbox validated the event before storing it: it has a string `type`.
    const { type } = JSON.parse(json) as { type: string };
    try {
      connection.publish(type, json);
    } catch (error) {
      // Thrown synchronously (closed connection, bad subject): nothing went out.
      throw new KeptnApiError('unreachable', error instanceof Error ? error.message : String(error), { code: 'ENOTCONN' });
    }
    await confirmed(connection.flush(), this.#confirmTimeoutMs, signal);
  }

  eventsByContext(): Promise<readonly unknown[]> {
    // The outbox is told it cannot check arrivals in NATS mode, so this is never asked.
    return Promise.reject(new KeptnApiError('unreachable', 'NATS mode: no datastore is asked whether an event arrived'));
  }
}

/** Resolves when `flush` does; rejects as `ambiguous` when it fails, takes too long or `signal` aborts. */
async function confirmed(flush: Promise<void>, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const stop = new AbortController();
  const limit = AbortSignal.any([AbortSignal.timeout(timeoutMs), stop.signal, ...(signal ? [signal] : [])]);
  try {
    await Promise.race([
      flush,
      new Promise<never>((_resolve, reject) => {
        limit.addEventListener('abort', () => {
          reject(new KeptnApiError('ambiguous', `published, not confirmed by NATS within ${timeoutMs} ms`, { code: 'ETIMEDOUT' }));
        }, { once: true });
      }),
    ]);
  } catch (error) {
    if (error instanceof KeptnApiError) throw error;
    throw new KeptnApiError('ambiguous', `published, then ${error instanceof Error ? error.message : String(error)}`, { code: 'ERR' });
  } finally {
    stop.abort();
  }
}
