/**
 * The Keptn API proxy: the recipient calls `/controlPlane/…`,
 * `/configuration-service/…` or `/mongodb-datastore/…` on the local port and
 * the agent forwards the call to the same prefix under KEPTN_API_ENDPOINT
 * with its credentials (`x-token`, OAuth bearer), so the recipient never
 * holds them, through HTTPS_PROXY/HTTP_PROXY unless NO_PROXY says
 * otherwise. In NATS mode (no endpoint) each prefix goes to its in-cluster
 * service, without a token, as the reference does (spec §7.3.2, §11.3).
 *
 * Both bodies are streamed, never buffered. Hop-by-hop headers are dropped
 * both ways; a client's `x-token` (and `Authorization`, with OAuth) is
 * replaced by the agent's; bodies over API_PROXY_MAX_PAYLOAD_BYTES_KB get a
 * 413; multi-valued headers (several `Set-Cookie`) survive; redirects are passed back, not
 * followed. Unlike the reference (spec §7.3, D14–D16): an unknown prefix is a
 * 404, `/controlPlaneX` is not `/controlPlane`, a path that climbs out of its
 * prefix is refused, and the `/resource/` escaping keeps what comes before
 * the last `/resource/`.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { KeptnCredentials } from './credentials.ts';
import type { EgressAgents } from './egress-proxy.ts';
import type { Logger } from './log.ts';

/** The prefixes proxied, as the first path segment (HTTP mode: the same prefix under the endpoint). */
export const PROXY_PREFIXES = ['controlPlane', 'configuration-service', 'mongodb-datastore'] as const;

/** Where one local path goes: the reference's (scheme, host, path) triple, or why it goes nowhere. */
export type ProxyMapping =
  | { readonly ok: true; readonly protocol: 'http:' | 'https:'; readonly host: string; readonly path: string }
  | { readonly ok: false; readonly status: 400 | 404; readonly message: string };

/**
 * Maps a local request path (API_PROXY_PATH already removed, still
 * percent-encoded, no query) to its target under `endpoint` in HTTP mode:
 * `/<prefix>/<rest>` → `<endpoint path>/<prefix>/<rest>`. For the
 * configuration-service, the part after the last `/resource/` is escaped once
 * more, as the reference does (spec §7.3.3): resource URIs reach the public
 * gateway escaped once, and the gateway decodes once.
 */
export function mapProxyPath(path: string, endpoint: URL): ProxyMapping {
  const checked = checkPath(path);
  if (!checked.ok) return checked;
  let mapped = `/${checked.prefix}/${checked.rest}`;
  if (checked.prefix === 'configuration-service') mapped = escapeResourceUri(mapped);
  return {
    ok: true,
    protocol: endpoint.protocol === 'https:' ? 'https:' : 'http:',
    host: endpoint.host,
    path: endpoint.pathname.replace(/\/$/, '') + mapped,
  };
}

/** The in-cluster service of each prefix (NATS mode), as the reference's `pkg/config/const.go`. */
export const IN_CLUSTER_HOSTS: Readonly<Record<(typeof PROXY_PREFIXES)[number], string>> = {
  'controlPlane': 'shipyard-controller:8080',
  'configuration-service': 'configuration-service:8080',
  'mongodb-datastore': 'mongodb-datastore:8080',
};

/**
 * Maps a local request path to its in-cluster service (NATS mode):
 * `/<prefix>/<rest>` → `http://<service>:8080/<rest>`. No `/resource/`
 * escaping: there is no gateway in between to decode it.
 */
export function mapInClusterPath(path: string): ProxyMapping {
  const checked = checkPath(path);
  if (!checked.ok) return checked;
  return { ok: true, protocol: 'http:', host: IN_CLUSTER_HOSTS[checked.prefix], path: `/${checked.rest}` };
}

/** The known prefix and the rest of a path, or why the path is not proxied. */
function checkPath(path: string):
  | { readonly ok: true; readonly prefix: (typeof PROXY_PREFIXES)[number]; readonly rest: string }
  | (ProxyMapping & { readonly ok: false }) {
  if (!path.startsWith('/')) return { ok: false, status: 404, message: `no Keptn API is proxied at ${path}` };
  const segments = path.slice(1).split('/');
  const prefix = PROXY_PREFIXES.find((known) => known === segments[0]);
  if (prefix === undefined) {
    return {
      ok: false, status: 404,
      message: `no Keptn API is proxied at /${segments[0]!}: the proxied prefixes are ${PROXY_PREFIXES.map((p) => `/${p}`).join(', ')}`,
    };
  }
  if (segments.some(climbs)) return { ok: false, status: 400, message: 'the path must not contain ".." segments (plain or percent-encoded)' };
  return { ok: true, prefix, rest: segments.slice(1).join('/') };
}

/**
 * Escapes what follows the last `/resource/` with Go's `url.QueryEscape`
 * and keeps everything before it (the reference lost it when `/resource/`
 * occurred twice, D14).
 */
export function escapeResourceUri(path: string): string {
  const marker = '/resource/';
  const at = path.lastIndexOf(marker);
  if (at < 0) return path;
  return path.slice(0, at) + marker + goQueryEscape(path.slice(at + marker.length));
}

/** Go's `url.QueryEscape`: everything but `A–Z a–z 0–9 - _ . ~` is %XX-escaped, and a space becomes `+`. */
export function goQueryEscape(text: string): string {
  return Array.from(Buffer.from(text, 'utf8'), (byte) => {
    const char = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(char)) return char;
    if (byte === 0x20) return '+';
    return `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }).join('');
}

/** A segment that is `..` once decoded (as many times as it decodes), or holds an encoded `../`. */
function climbs(segment: string): boolean {
  let text = segment;
  for (let round = 0; round < 4; round++) {
    if (text.split(/[/\\]/).includes('..')) return true;
    let decoded: string;
    try {
      decoded = decodeURIComponent(text);
    } catch {
      return false;
    }
    if (decoded === text) return false;
    text = decoded;
  }
  return true;
}

/** Connection-level headers (RFC 9110 §7.6.1): meaningful for one hop only, never forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Raw headers (`[name, value, name, value, …]`) minus hop-by-hop ones, those named in `Connection`, and `drop`. */
function filterHeaders(raw: readonly string[], drop: ReadonlySet<string>): string[] {
  const named = new Set<string>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const token of raw[i + 1]!.split(',')) named.add(token.trim().toLowerCase());
  }
  const kept: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || named.has(name) || drop.has(name)) continue;
    kept.push(raw[i]!, raw[i + 1]!);
  }
  return kept;
}

export interface ApiProxyOptions {
  /** KEPTN_API_ENDPOINT; undefined in NATS mode: the in-cluster services. */
  readonly endpoint: URL | undefined;
  /** The agent's headers replace the client's of the same name; a client's others pass through. */
  readonly credentials: KeptnCredentials;
  /** Connections to the Keptn API (proxies, TLS verification as HTTP_SSL_VERIFY). */
  readonly agents: EgressAgents;
  /** Longest silence from the upstream before the call is given up (504 before the answer started): API_PROXY_HTTP_TIMEOUT. */
  readonly timeoutMs: number;
  /** Largest request body forwarded (API_PROXY_MAX_PAYLOAD_BYTES_KB); larger → 413. */
  readonly maxBodyBytes: number;
  readonly logger: Logger;
}

class UpstreamTimeout extends Error {
  override name = 'UpstreamTimeout';
}

class BodyTooLarge extends Error {
  override name = 'BodyTooLarge';
}

/** The 413 message of the local port: names the limit and the setting that sets it. */
export function tooLargeMessage(what: string, maxBodyBytes: number): string {
  return `${what} is larger than ${maxBodyBytes} bytes, the limit set by API_PROXY_MAX_PAYLOAD_BYTES_KB`;
}

/** Writes a JSON `{"message"}` answer (the local server's one error shape). */
export type ErrorResponder = (res: ServerResponse, status: number, message: string, headers?: Record<string, string>) => void;

export class ApiProxy {
  readonly #endpoint: URL | undefined;
  readonly #credentials: KeptnCredentials;
  readonly #agents: EgressAgents;
  readonly #timeoutMs: number;
  readonly #maxBodyBytes: number;
  readonly #logger: Logger;

  constructor({ endpoint, credentials, agents, timeoutMs, maxBodyBytes, logger }: ApiProxyOptions) {
    this.#endpoint = endpoint;
    this.#credentials = credentials;
    this.#agents = agents;
    this.#timeoutMs = timeoutMs;
    this.#maxBodyBytes = maxBodyBytes;
    this.#logger = logger.child({ component: 'proxy' });
  }

  /**
   * Forwards one request. `path` is the local path with API_PROXY_PATH
   * removed (raw, percent-encoded); `query` is the raw query with its `?`, or ''.
   */
  forward(req: IncomingMessage, res: ServerResponse, path: string, query: string, fail: ErrorResponder): void {
    const mapping = this.#endpoint === undefined ? mapInClusterPath(path) : mapProxyPath(path, this.#endpoint);
    if (!mapping.ok) {
      req.resume();
      fail(res, mapping.status, mapping.message);
      return;
    }
    if (Number(req.headers['content-length']) > this.#maxBodyBytes) {
      req.resume();
      fail(res, 413, tooLargeMessage('the request body', this.#maxBodyBytes), { connection: 'close' });
      return;
    }
    // The body waits, paused, until the credentials are known (an OAuth token may have to be fetched first).
    this.#credentials.headers().then(
      (credentials) => { this.#send(req, res, mapping, query, credentials, fail); },
      (error: unknown) => {
        req.resume();
        const message = error instanceof Error ? error.message : String(error);
        this.#logger.warn('proxied call not sent: no credentials for the Keptn API', { method: req.method, path: mapping.path, error: message });
        fail(res, 502, `the Keptn API cannot be called: ${message}`);
      },
    );
  }

  #send(req: IncomingMessage, res: ServerResponse, mapping: ProxyMapping & { ok: true }, query: string,
    credentials: Readonly<Record<string, string>>, fail: ErrorResponder): void {
    if (res.destroyed) {
      req.resume();
      return;
    }
    const target = new URL(`${mapping.protocol}//${mapping.host}`);
    const drop = new Set(['host', ...this.#credentials.headerNames]);
    const headers = ['Host', mapping.host, ...filterHeaders(req.rawHeaders, drop), ...Object.entries(credentials).flat()];
    const started = Date.now();
    const upstream = (mapping.protocol === 'https:' ? https : http).request({
      protocol: mapping.protocol,
      hostname: target.hostname.replace(/^\[(.*)\]$/, '$1'),
      ...(target.port !== '' && { port: Number(target.port) }),
      method: req.method ?? 'GET',
      path: mapping.path + query,
      headers,
      agent: this.#agents.for(target),
    });
    upstream.setTimeout(this.#timeoutMs, () => upstream.destroy(new UpstreamTimeout(`no answer from the Keptn API within ${this.#timeoutMs} ms`)));

    upstream.on('response', (answer) => {
      if (answer.statusCode === 401) this.#credentials.refused(credentials);
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage ?? '', filterHeaders(answer.rawHeaders, new Set(['x-token'])));
      answer.pipe(res);
      answer.on('error', () => res.destroy());
      answer.on('end', () => {
        this.#logger.debug('proxied', { method: req.method, path: mapping.path, status: answer.statusCode, ms: Date.now() - started });
      });
    });
    upstream.on('error', (error) => {
      if (res.destroyed) return;
      if (res.headersSent) {
        // The answer had started: all that can be done is to cut it, so the client sees it incomplete.
        res.destroy();
        return;
      }
      if (error instanceof BodyTooLarge) {
        fail(res, 413, error.message, { connection: 'close' });
      } else if (error instanceof UpstreamTimeout) {
        this.#logger.warn('proxied call timed out', { method: req.method, path: mapping.path, timeoutMs: this.#timeoutMs });
        fail(res, 504, error.message);
      } else {
        const code = (error as NodeJS.ErrnoException).code;
        this.#logger.warn('proxied call failed: the Keptn API is unreachable', { method: req.method, path: mapping.path, code, error: error.message });
        fail(res, 502, `the Keptn API at ${target.origin} is unreachable${code ? ` (${code})` : ''}`);
      }
      req.resume();
    });
    // The client went away: stop the upstream call too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.on('error', () => upstream.destroy());
    // A body without Content-Length (chunked) is counted as it streams, and cut at the limit.
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > this.#maxBodyBytes && !upstream.destroyed) {
        req.unpipe(upstream);
        upstream.destroy(new BodyTooLarge(tooLargeMessage('the request body', this.#maxBodyBytes)));
      }
    });
    req.pipe(upstream);
  }

  /** Closes kept-alive upstream connections. */
  close(): void {
    this.#agents.close();
  }
}
