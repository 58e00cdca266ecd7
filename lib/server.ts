/**
 * The local HTTP server on API_PROXY_BIND_ADDRESS:API_PROXY_PORT: the event
 * relay at EVENT_FORWARDING_PATH (relay.ts → outbox) and the Keptn API proxy
 * under API_PROXY_PATH (proxy.ts). Every error answer comes from one helper,
 * `sendError`: a status and a JSON `{"message"}`, never a stack.
 *
 * Routes: exactly EVENT_FORWARDING_PATH → relay (POST only, else 405; body
 * over API_PROXY_MAX_PAYLOAD_BYTES_KB, 1 MiB by default → 413); a path under API_PROXY_PATH → the proxy, with
 * API_PROXY_PATH removed before the prefix is mapped; anything else → 404.
 *
 * Shutdown (`stop`): new relays and proxied calls get 503 with Retry-After,
 * the listener closes, idle connections are closed, the outbox keeps
 * delivering until it is empty or the deadline, and at the deadline the
 * remaining connections are cut.
 */
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KeptnCloudEvent } from './cloudevents.ts';
import type { Part } from './lifecycle.ts';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { Readiness } from './readiness.ts';
import { metaFromEvent, type Outbox } from './outbox/outbox.ts';
import { tooLargeMessage, type ApiProxy } from './proxy.ts';
import { parseRelayRequest } from './relay.ts';

export const MAX_RELAY_BODY_BYTES = 1024 * 1024;
/** Retry-After (seconds) of a 503 while shutting down. */
const SHUTDOWN_RETRY_AFTER_S = 5;

/** Answers `status` with `{"message": message}`: the local server's one error shape. */
export function sendError(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  if (res.destroyed) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ message });
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

export interface LocalServerOptions {
  /** API_PROXY_BIND_ADDRESS. */
  readonly bindAddress: string;
  /** API_PROXY_PORT (0: a free port, read back from `port`). */
  readonly port: number;
  /** API_PROXY_PATH. */
  readonly apiProxyPath: string;
  /** EVENT_FORWARDING_PATH. */
  readonly eventForwardingPath: string;
  readonly outbox: Outbox;
  /** Absent without KEPTN_API_ENDPOINT: proxied paths then answer 404 saying so. */
  readonly proxy: ApiProxy | undefined;
  readonly logger: Logger;
  readonly metrics?: Pick<Metrics, 'relays'>;
  readonly readiness?: Readiness;
  /**
   * Called with every event the relay accepted (answered 202), including
   * `sh.keptn.log.error`, which is not relayed to `/v1/event`: the error-log
   * forwarder listens here. A throwing listener does not fail the relay.
   */
  readonly onEvent?: (event: KeptnCloudEvent) => void;
  readonly maxBodyBytes?: number;
}

export class LocalServer implements Part {
  readonly name = 'local server';
  readonly #options: LocalServerOptions;
  readonly #logger: Logger;
  readonly #server: Server;
  readonly #proxyPath: string;
  readonly #maxBodyBytes: number;
  readonly #setListening: ((holds: boolean, reason?: string) => void) | undefined;
  #listening = false;
  #stopping = false;

  constructor(options: LocalServerOptions) {
    this.#options = options;
    this.#logger = options.logger.child({ component: 'local server' });
    this.#proxyPath = options.apiProxyPath.replace(/\/+$/, '');
    this.#maxBodyBytes = options.maxBodyBytes ?? MAX_RELAY_BODY_BYTES;
    this.#setListening = options.readiness?.declare('local server', 'not listening yet');
    this.#server = http.createServer((req, res) => this.#route(req, res));
  }

  /** The port it listens on, once started. */
  get port(): number | undefined {
    const address = this.#server.address();
    return address !== null && typeof address === 'object' ? (address as AddressInfo).port : undefined;
  }

  async start(): Promise<void> {
    await this.#options.outbox.start();
    await new Promise<void>((resolve, reject) => {
      const failed = (error: Error): void => reject(new Error(`cannot listen on ${this.#options.bindAddress}:${this.#options.port}: ${error.message}`));
      this.#server.once('error', failed);
      this.#server.listen(this.#options.port, this.#options.bindAddress, () => {
        this.#server.off('error', failed);
        resolve();
      });
    });
    this.#listening = true;
    this.#setListening?.(true);
    this.#logger.info('local server listening', {
      address: this.#options.bindAddress, port: this.port, relay: this.#options.eventForwardingPath, proxy: this.#options.apiProxyPath,
    });
  }

  async stop(deadline: AbortSignal): Promise<void> {
    this.#stopping = true;
    this.#setListening?.(false, 'shutting down');
    const closed = this.#listening
      ? new Promise<void>((resolve) => this.#server.close(() => resolve()))
      : Promise.resolve();
    this.#server.closeIdleConnections();
    await this.#options.outbox.drain(deadline);
    await Promise.race([closed, aborted(deadline)]);
    this.#server.closeAllConnections();
    await closed;
    this.#options.proxy?.close();
  }

  #route(req: IncomingMessage, res: ServerResponse): void {
    if (this.#stopping) res.setHeader('connection', 'close');
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    if (path === this.#options.eventForwardingPath) {
      this.#relay(req, res).catch((error: unknown) => {
        this.#logger.error('relay failed unexpectedly', { error: error instanceof Error ? error.message : String(error) });
        sendError(res, 500, 'the event could not be relayed');
      });
      return;
    }
    const proxied = this.#underProxyPath(path);
    if (proxied === undefined) {
      req.resume();
      sendError(res, 404, `nothing at ${path}: events go to ${this.#options.eventForwardingPath}, Keptn API calls under ${this.#options.apiProxyPath}`);
      return;
    }
    if (this.#stopping) {
      req.resume();
      sendError(res, 503, 'the agent is shutting down', { 'retry-after': String(SHUTDOWN_RETRY_AFTER_S) });
      return;
    }
    if (this.#options.proxy === undefined) {
      req.resume();
      sendError(res, 404, 'the Keptn API proxy needs KEPTN_API_ENDPOINT, which is not set');
      return;
    }
    this.#options.proxy.forward(req, res, proxied, queryAt < 0 ? '' : url.slice(queryAt), sendError);
  }

  /** The path with API_PROXY_PATH removed (starting with `/`), or undefined when it is not under it. */
  #underProxyPath(path: string): string | undefined {
    if (!path.startsWith('/')) return undefined;
    if (this.#proxyPath === '') return path;
    if (path === this.#proxyPath) return '/';
    return path.startsWith(`${this.#proxyPath}/`) ? path.slice(this.#proxyPath.length) : undefined;
  }

  async #relay(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const relays = this.#options.metrics?.relays;
    if (req.method !== 'POST') {
      req.resume();
      sendError(res, 405, `${req.method ?? 'this method'} is not allowed here: POST one CloudEvent to ${this.#options.eventForwardingPath}`, { allow: 'POST' });
      return;
    }
    if (this.#stopping) {
      req.resume();
      relays?.inc({ outcome: 'refused' });
      sendError(res, 503, 'the agent is shutting down: send the event again to its replacement', { 'retry-after': String(SHUTDOWN_RETRY_AFTER_S) });
      return;
    }
    const declared = Number(req.headers['content-length']);
    const body = declared > this.#maxBodyBytes ? undefined : await readBody(req, this.#maxBodyBytes);
    if (body === undefined) {
      discard(req, this.#maxBodyBytes * 16);
      relays?.inc({ outcome: 'rejected' });
      sendError(res, 413, tooLargeMessage('the event', this.#maxBodyBytes), { connection: 'close' });
      return;
    }
    if (body === 'aborted') return;
    const input = parseRelayRequest(req.headers, body);
    if (!input.ok) {
      relays?.inc({ outcome: 'rejected' });
      this.#logger.warn('refused an event from the recipient', { status: input.status, reason: input.message });
      sendError(res, input.status, input.message);
      return;
    }
    const { event } = input;
    if (event.type !== 'sh.keptn.log.error') {
      const added = await this.#options.outbox.add(metaFromEvent(event), input.json);
      if (!added.ok) {
        if (added.reason !== 'full') relays?.inc({ outcome: 'refused' });
        sendError(res, 503, added.message, { 'retry-after': String(Math.max(1, Math.ceil(added.retryAfterMs / 1_000))) });
        return;
      }
    }
    relays?.inc({ outcome: 'accepted' });
    if (this.#logger.isDebugEnabled()) {
      this.#logger.debug('relay accepted', { eventId: event.id, type: event.type, keptnContext: event.shkeptncontext, mode: input.mode });
    }
    res.writeHead(202, { 'content-length': '0' });
    res.end();
    this.#notify(event);
  }

  #notify(event: KeptnCloudEvent): void {
    const listener = this.#options.onEvent;
    if (listener === undefined) return;
    try {
      listener(event);
    } catch (error) {
      this.#logger.error('an event listener failed', { eventId: event.id, error: error instanceof Error ? error.message : String(error) });
    }
  }
}

/** The whole body, `undefined` past `limit` bytes, or 'aborted' when the client went away. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined | 'aborted'> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.off('end', onEnd);
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', () => resolve('aborted'));
    req.on('close', () => { if (!req.complete) resolve('aborted'); });
  });
}

/** Reads and drops what is left of a refused body, so the client reads the answer; cuts the connection past `cap`. */
function discard(req: IncomingMessage, cap: number): void {
  let size = 0;
  req.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > cap) req.destroy();
  });
  req.resume();
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}
