/**
 * A real recipient (Keptn-service stand-in) on 127.0.0.1: records every
 * request (method, path, headers, raw body) and answers 200, unless told to
 * fail (status N for the next K requests), to reset (drop the connection
 * after reading the next K requests, without answering), to drop (close the
 * connection of the next K requests as they arrive, unread and unrecorded:
 * a server closing an idle keep-alive connection just as it is reused), to hang (hold
 * requests unanswered until released or closed), or to be down (port closed,
 * connections refused).
 * `received(n)` waits for the n-th request without sleeping.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The body parsed as JSON. */
  json(): Record<string, unknown>;
}

interface Waiter {
  readonly count: number;
  resolve(): void;
}

export class Recipient {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #requests: ReceivedRequest[] = [];
  readonly #held: ServerResponse[] = [];
  #waiters: Waiter[] = [];
  #failures: Array<{ status: number; remaining: number; headers: Record<string, string> }> = [];
  #resets = 0;
  #drops = 0;
  #hanging = false;
  #answering = 0;
  #maxAnswering = 0;
  #port = 0;
  #listening = false;

  private constructor() {
    this.#server = createServer((request, response) => {
      if (this.#drops > 0) {
        this.#drops--;
        request.socket.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        this.#requests.push({
          method: request.method ?? '',
          path: request.url ?? '',
          headers: request.headers,
          body,
          json: () => JSON.parse(body) as Record<string, unknown>,
        });
        this.#answering++;
        this.#maxAnswering = Math.max(this.#maxAnswering, this.#answering);
        response.on('close', () => { this.#answering--; });
        this.#notify();
        this.#answer(response);
      });
    });
    this.#server.on('connection', (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
    });
  }

  /** Starts listening on a free port. */
  static async start(): Promise<Recipient> {
    const recipient = new Recipient();
    await recipient.up();
    return recipient;
  }

  get port(): number {
    return this.#port;
  }

  /** Settings that point the agent here. */
  get env(): Record<string, string> {
    return { PUBSUB_RECIPIENT: 'http://127.0.0.1', PUBSUB_RECIPIENT_PORT: String(this.#port) };
  }

  /** Every request so far, in arrival order. */
  get requests(): readonly ReceivedRequest[] {
    return this.#requests;
  }

  /** The ids of the CloudEvents received so far, in arrival order. */
  ids(): string[] {
    return this.#requests.map((request) => String(request.json().id));
  }

  /** Most requests ever held open at once (received, not yet answered). */
  get maxConcurrent(): number {
    return this.#maxAnswering;
  }

  /** Requests held unanswered right now. */
  get held(): number {
    return this.#held.length;
  }

  /** Resolves once at least `count` requests have arrived; rejects after `timeout` ms. */
  received(count: number, { timeout = 5_000 } = {}): Promise<void> {
    if (this.#requests.length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((waiter) => waiter !== entry);
        reject(new Error(`timed out after ${timeout} ms waiting for ${count} requests (got ${this.#requests.length})`));
      }, timeout);
      const entry: Waiter = { count, resolve: () => { clearTimeout(timer); resolve(); } };
      this.#waiters.push(entry);
    });
  }

  /** Answers the next `times` requests with `status` (and `headers`). */
  fail(status: number, times: number, headers: Record<string, string> = {}): void {
    this.#failures.push({ status, remaining: times, headers });
  }

  /** Drops the connection of the next `times` requests once they are read, without an answer. */
  reset(times: number): void {
    this.#resets += times;
  }

  /** Closes the connection of the next `times` requests as they arrive, before reading or recording them. */
  drop(times: number): void {
    this.#drops += times;
  }

  /** From now on, holds requests unanswered (until `release()` or `close()`). */
  hang(): void {
    this.#hanging = true;
  }

  /** Stops hanging and answers the held requests with 200. */
  release(): void {
    this.#hanging = false;
    for (const response of this.#held.splice(0)) response.writeHead(200).end();
  }

  /** Closes the port and every connection: requests are refused until `up()`. */
  async down(): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#held.splice(0);
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  /** Listens again, on the same port as before (a free one the first time). */
  async up(): Promise<void> {
    if (this.#listening) return;
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#listening = true;
    this.#port = (this.#server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    await this.down();
  }

  #answer(response: ServerResponse): void {
    if (this.#resets > 0) {
      this.#resets--;
      response.socket?.destroy();
      return;
    }
    const failure = this.#failures[0];
    if (failure !== undefined) {
      failure.remaining--;
      if (failure.remaining <= 0) this.#failures.shift();
      response.writeHead(failure.status, { 'content-type': 'application/json', ...failure.headers }).end(JSON.stringify({ message: 'failing on cue' }));
      return;
    }
    if (this.#hanging) {
      this.#held.push(response);
      return;
    }
    response.writeHead(200).end();
  }

  #notify(): void {
    const count = this.#requests.length;
    const due = this.#waiters.filter((waiter) => waiter.count <= count);
    this.#waiters = this.#waiters.filter((waiter) => waiter.count > count);
    for (const waiter of due) waiter.resolve();
  }
}
