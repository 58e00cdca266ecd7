/**
 * The health server on HEALTH_ENDPOINT_PORT (10999), all interfaces, as the
 * reference (kubelet probes come from outside the pod):
 *
 * - `/health` (liveness): 200 `{"status":"OK"}` while the process runs — the
 *   reference's body, which existing manifests probe;
 * - `/ready` (readiness): 200 `{"status":"ready"}` once every condition of
 *   `Readiness` holds, else 503 `{"status":"not ready","notReady":[…]}`;
 * - `/metrics`: Prometheus text format from the agent's registry.
 *
 * GET and HEAD only. It starts first and stops last, so probes and scrapes
 * see the whole life of the agent, shutdown included.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from './log.ts';
import type { Metrics } from './metrics.ts';
import type { Readiness } from './readiness.ts';

export interface HealthServerOptions {
  /** HEALTH_ENDPOINT_PORT; 0 picks a free port (tests). */
  readonly port: number;
  readonly host?: string;
  readonly readiness: Pick<Readiness, 'report'>;
  readonly metrics: Pick<Metrics, 'registry'>;
  readonly logger: Logger;
  /** More of the agent's state for `/ready`'s body (control plane generation, subscriptions, heartbeat). */
  readonly details?: () => Record<string, unknown>;
}

/** A long-lived part (see `lifecycle.ts`). */
export class HealthServer {
  readonly name = 'health';
  readonly #options: HealthServerOptions;
  readonly #host: string;
  readonly #server: Server;

  constructor(options: HealthServerOptions) {
    this.#options = options;
    this.#host = options.host ?? '0.0.0.0';
    this.#server = createServer((request, response) => {
      this.#handle(request, response).catch((error: unknown) => {
        options.logger.error('health server request failed', { path: request.url, error: error instanceof Error ? error.message : String(error) });
        if (!response.headersSent) send(response, request, 500, { message: 'internal error' });
        else response.destroy();
      });
    });
  }

  /** The port it listens on, once started. */
  get port(): number | undefined {
    const address = this.#server.address();
    return address !== null && typeof address === 'object' ? (address as AddressInfo).port : undefined;
  }

  /** Listens; rejects with a message naming the port and the setting when it cannot. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void => {
        const why = error.code === 'EADDRINUSE' ? 'the port is already in use' : error.message;
        reject(new Error(`cannot listen on ${this.#host}:${this.#options.port} for /health, /ready and /metrics (HEALTH_ENDPOINT_PORT): ${why}`));
      };
      this.#server.once('error', onError);
      this.#server.listen(this.#options.port, this.#host, () => {
        this.#server.off('error', onError);
        this.#options.logger.info('health server listening', { host: this.#host, port: this.port });
        resolve();
      });
    });
  }

  /** Stops listening; open connections are cut when the deadline passes. */
  async stop(deadline: AbortSignal): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const cut = (): void => this.#server.closeAllConnections();
    if (deadline.aborted) cut();
    else deadline.addEventListener('abort', cut, { once: true });
    try {
      await closed;
    } finally {
      deadline.removeEventListener('abort', cut);
    }
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('allow', 'GET, HEAD');
      send(response, request, 405, { message: `method ${request.method ?? ''} not allowed: use GET or HEAD` });
      return;
    }
    const path = new URL(request.url ?? '/', 'http://health').pathname;
    switch (path) {
      case '/health':
        send(response, request, 200, { status: 'OK' });
        return;
      case '/ready': {
        const report = this.#options.readiness.report();
        const details = this.#options.details?.() ?? {};
        if (report.ready) send(response, request, 200, { status: 'ready', ...details });
        else send(response, request, 503, { status: 'not ready', notReady: report.notReady, ...details });
        return;
      }
      case '/metrics': {
        const { registry } = this.#options.metrics;
        const body = await registry.metrics();
        response.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(body) });
        response.end(request.method === 'HEAD' ? undefined : body);
        return;
      }
      default:
        send(response, request, 404, { message: `no such path: ${path} (try /health, /ready or /metrics)` });
    }
  }
}

function send(response: ServerResponse, request: IncomingMessage, status: number, body: object): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(request.method === 'HEAD' ? undefined : text);
}
