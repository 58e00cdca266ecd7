/**
 * The agent's one connection to NATS (PUBSUB_URL), kept up for the agent's
 * whole life: the receiver subscribes through it and the outbox publishes
 * through it.
 *
 * Starting never waits for NATS: the agent serves its local port (relayed
 * events go to the outbox) while the first connection is still being tried.
 * The first connection is retried with exponential backoff and jitter; once
 * connected, the client itself reconnects for ever with the same backoff and
 * re-establishes the subscriptions. Should the client still give up (it
 * closes, e.g. after repeated authorization errors), a new connection is
 * made from scratch and `onConnect` runs again.
 *
 * Outages are logged once when they begin and once when they end.
 */
import { setTimeout as sleepFor } from 'node:timers/promises';
import { connect, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import type { Part } from '../lifecycle.ts';
import type { Logger } from '../log.ts';

/** First wait before a reconnection attempt; doubles per failed attempt, with jitter. */
export const RECONNECT_INITIAL_MS = 100;
/** Longest wait between reconnection attempts: the nats.js default wait, so a restarted server is found soon. */
export const RECONNECT_MAX_MS = 2_000;
/** Limit for one connection handshake. */
const CONNECT_TIMEOUT_MS = 5_000;

/** The wait before reconnection attempt `attempt` (1-based): between half and all of the exponential value. */
export function reconnectDelayMs(attempt: number, random: () => number = Math.random): number {
  const exponential = Math.min(RECONNECT_MAX_MS, RECONNECT_INITIAL_MS * 2 ** Math.min(attempt - 1, 30));
  return exponential / 2 + random() * (exponential / 2);
}

export interface NatsLinkOptions {
  /** PUBSUB_URL. */
  readonly url: string;
  readonly logger: Logger;
  /** Connection name shown by the NATS server's monitoring. */
  readonly name?: string;
}

export class NatsLink implements Part {
  readonly name = 'nats';
  readonly #options: NatsLinkOptions;
  readonly #stop = new AbortController();
  readonly #connectHandlers: Array<(connection: NatsConnection) => void> = [];
  readonly #upHandlers: Array<() => void> = [];
  #connection: NatsConnection | undefined;
  #connected = false;
  /** Failed attempts at a new connection in a row. */
  #failures = 0;
  /** The client's reconnection attempts since the connection was last up. */
  #reconnects = 0;
  #loop: Promise<void> | undefined;

  constructor(options: NatsLinkOptions) {
    this.#options = options;
  }

  /** True while a connection to the server is up (not while the client reconnects). */
  get connected(): boolean {
    return this.#connected;
  }

  /** The current connection, up or reconnecting; undefined before the first one and after stop. */
  get connection(): NatsConnection | undefined {
    return this.#connection;
  }

  /** Runs `handler` on every new connection (not on the client's own reconnects, which keep subscriptions). */
  onConnect(handler: (connection: NatsConnection) => void): void {
    this.#connectHandlers.push(handler);
    if (this.#connection !== undefined) handler(this.#connection);
  }

  /** Runs `handler` whenever the connection comes up: the first time, after a reconnect, on a new connection. */
  onUp(handler: () => void): void {
    this.#upHandlers.push(handler);
  }

  start(): Promise<void> {
    this.#loop = this.#run();
    return Promise.resolve();
  }

  /** Flushes what was published and closes; gives up waiting when `deadline` aborts. */
  async stop(deadline: AbortSignal): Promise<void> {
    this.#stop.abort();
    const connection = this.#connection;
    if (connection !== undefined && !connection.isClosed()) {
      const closing = this.#connected ? connection.drain().catch(() => connection.close()) : connection.close();
      await Promise.race([closing, aborted(deadline)]);
      if (!connection.isClosed()) await connection.close();
    }
    // A connection attempt under way ends within its own time limit; the deadline bounds the wait for it.
    await Promise.race([this.#loop, aborted(deadline)]);
    this.#connection = undefined;
    this.#connected = false;
  }

  async #run(): Promise<void> {
    const { logger } = this.#options;
    const signal = this.#stop.signal;
    let everConnected = false;
    while (!signal.aborted) {
      let connection: NatsConnection;
      try {
        connection = await connect(this.#connectionOptions());
      } catch (error) {
        this.#failures++;
        if (this.#failures === 1) {
          logger.warn('cannot connect to NATS: retrying with backoff', { url: this.#options.url, error: messageOf(error) });
        }
        try {
          await sleepFor(reconnectDelayMs(this.#failures), undefined, { signal });
        } catch {
          return;
        }
        continue;
      }
      if (signal.aborted) {
        await connection.close();
        return;
      }
      this.#failures = 0;
      this.#reconnects = 0;
      this.#connection = connection;
      this.#connected = true;
      logger.info(everConnected ? 'connected to NATS again' : 'connected to NATS', { server: connection.getServer() });
      everConnected = true;
      for (const handler of this.#connectHandlers) handler(connection);
      for (const handler of this.#upHandlers) handler();
      this.#watch(connection).catch((error: unknown) => {
        logger.error('cannot follow the NATS connection status', { error: messageOf(error) });
      });
      const error = await connection.closed();
      this.#connected = false;
      if (signal.aborted) return;
      logger.error('the NATS connection closed: connecting anew', { ...(error instanceof Error && { error: error.message }) });
    }
  }

  /** Follows the client's reconnects, to log them once and to know whether publishing can work now. */
  async #watch(connection: NatsConnection): Promise<void> {
    const { logger } = this.#options;
    for await (const status of connection.status()) {
      if (status.type === 'disconnect' && this.#connected) {
        this.#connected = false;
        if (!this.#stop.signal.aborted) logger.warn('lost the connection to NATS: reconnecting with backoff', { server: status.server });
      } else if (status.type === 'reconnect') {
        this.#reconnects = 0;
        this.#connected = true;
        logger.info('reconnected to NATS', { server: status.server });
        for (const handler of this.#upHandlers) handler();
      }
    }
  }

  #connectionOptions(): ConnectionOptions {
    return {
      servers: this.#options.url,
      name: this.#options.name ?? 'keptn-distributor',
      timeout: CONNECT_TIMEOUT_MS,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectJitter: 0,
      // Called before each reconnection attempt: the same backoff as the first connection.
      reconnectDelayHandler: () => reconnectDelayMs(++this.#reconnects),
    };
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
