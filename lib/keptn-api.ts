/**
 * The one HTTP client for the Keptn control plane: URLs, the credentials
 * (`x-token`, OAuth bearer), time limits, TLS verification, outgoing
 * proxies, and typed calls. It knows nothing of loops, retries or
 * schedules; those belong to its callers.
 *
 * Every failure leaves here as a `KeptnApiError` holding only
 * `{status, code, message}`: a got error carries its request options, the
 * token included, and must never reach a logger.
 */
import got, { RequestError, type Got, type Response } from 'got';
import { joinPath, type Config } from './config.ts';
import { KeptnCredentials } from './credentials.ts';
import { EgressAgents } from './egress-proxy.ts';
import { isRecord } from './json-object.ts';

/** Why a call failed, classified once, here, where the protocol is known. */
export type FailureKind =
  /** The control plane answered with a non-2xx status. */
  | 'status'
  /** Nothing was sent: refused, DNS, TLS. Safe to send again. */
  | 'unreachable'
  /** The request went out and no (complete) answer came back: it may have arrived. */
  | 'ambiguous';

export class KeptnApiError extends Error {
  override name = 'KeptnApiError';
  readonly kind: FailureKind;
  /** HTTP status, for kind `status`. */
  readonly status: number | undefined;
  /** Node/got error code (ECONNREFUSED, ETIMEDOUT, …) for the other kinds. */
  readonly code: string | undefined;
  /** Seconds from a `Retry-After` header, when the control plane sent one. */
  readonly retryAfterMs: number | undefined;
  /** The answer carried Keptn's JSON error body (`{code, message}`): a Keptn service answered, not a router or a gateway. */
  readonly keptnBody: boolean;
  constructor(kind: FailureKind, message: string, details: { status?: number; code?: string; retryAfterMs?: number; keptnBody?: boolean } = {}) {
    super(message);
    this.kind = kind;
    this.status = details.status;
    this.code = details.code;
    this.retryAfterMs = details.retryAfterMs;
    this.keptnBody = details.keptnBody ?? false;
  }

  /** What is safe to log. */
  toJSON(): { status?: number; code?: string; message: string } {
    return { ...(this.status !== undefined && { status: this.status }), ...(this.code !== undefined && { code: this.code }), message: this.message };
  }
}

/** One page of `GET …/event/triggered/<type>`. */
export interface TriggeredEventsPage {
  /** Raw entries as the control plane sent them; validated by the caller. */
  readonly events: readonly unknown[];
  /** Cursor for the next page; absent when this was the last page. */
  readonly nextPageKey: string | undefined;
  readonly totalCount: number | undefined;
}

export interface PageQuery {
  readonly nextPageKey?: string;
  readonly pageSize?: number;
  /** Only this project's events: the server then searches one project, and answers 500 "no matching event found" for none. */
  readonly project?: string;
  /** Only this stage's, and this service's events (sent by 1.x references for single-value subscription filters). */
  readonly stage?: string;
  readonly service?: string;
  readonly signal?: AbortSignal;
}

export interface KeptnApiOptions {
  readonly credentials: KeptnCredentials;
  /** Connections to Keptn, through HTTPS_PROXY/HTTP_PROXY unless NO_PROXY says otherwise. */
  readonly agents: EgressAgents;
  readonly sslVerify: boolean;
  /** Limit for one call, from connecting to the last byte of the answer. */
  readonly timeoutMs: number;
  readonly pollingUrl: URL;
  readonly controlPlaneUrl: URL | undefined;
  readonly apiEndpoint: URL | undefined;
}

/** The credentials of calls to Keptn without OAuth: the API token, except in the cluster, whose services take none (spec §11.3). */
export function tokenCredentials(config: Config): KeptnCredentials {
  return config.connectionType === 'nats' ? KeptnCredentials.none() : new KeptnCredentials(config.keptnApiToken);
}

/** The connection agents of calls to Keptn: TLS verification as HTTP_SSL_VERIFY, the proxies of the configuration. */
export function egressAgentsOf(config: Config): EgressAgents {
  return new EgressAgents(config, { keepAlive: true, rejectUnauthorized: config.httpSslVerify });
}

/**
 * Options for the API client from the configuration. `timeoutMs` limits one
 * call (API_PROXY_HTTP_TIMEOUT, as the reference's one HTTP client).
 */
export function keptnApiOptions(config: Config, timeoutMs = config.apiProxyHttpTimeout, credentials = tokenCredentials(config), agents = egressAgentsOf(config)): KeptnApiOptions {
  return {
    credentials,
    agents,
    sslVerify: config.httpSslVerify,
    timeoutMs,
    pollingUrl: config.pollingUrl,
    controlPlaneUrl: config.controlPlaneUrl,
    apiEndpoint: config.keptnApiEndpoint,
  };
}

export class KeptnApi {
  readonly #http: Got;
  readonly #options: KeptnApiOptions;

  constructor(options: KeptnApiOptions) {
    this.#options = options;
    this.#http = got.extend({
      timeout: { request: options.timeoutMs },
      https: { rejectUnauthorized: options.sslVerify },
      retry: { limit: 0 },
      throwHttpErrors: false,
      followRedirect: false,
    });
  }

  /** The URL polled for one event type (the type becomes one path segment). */
  pollingUrlFor(type: string): URL {
    return joinPath(this.#options.pollingUrl, `/${encodeURIComponent(type)}`);
  }

  /** One page of open triggered events of `type`. */
  async triggeredEventsPage(type: string, query: PageQuery = {}): Promise<TriggeredEventsPage> {
    const url = this.pollingUrlFor(type);
    if (query.pageSize !== undefined) url.searchParams.set('pageSize', String(query.pageSize));
    if (query.project !== undefined) url.searchParams.set('project', query.project);
    if (query.stage !== undefined) url.searchParams.set('stage', query.stage);
    if (query.service !== undefined) url.searchParams.set('service', query.service);
    if (query.nextPageKey !== undefined) url.searchParams.set('nextPageKey', query.nextPageKey);
    const body = await this.#json(url, { method: 'GET', signal: query.signal });
    if (!isRecord(body) || !Array.isArray(body.events)) {
      throw new KeptnApiError('status', 'the control plane answered 200 without an "events" list', { status: 200 });
    }
    const next = body.nextPageKey;
    return {
      events: body.events,
      nextPageKey: typeof next === 'string' && next !== '' && next !== '0' ? next : undefined,
      totalCount: typeof body.totalCount === 'number' ? body.totalCount : undefined,
    };
  }

  /** Registers the integration; returns the id the control plane gave it. */
  async register(integration: object, signal?: AbortSignal): Promise<string> {
    const body = await this.#json(this.#controlPlane('/v1/uniform/registration'), {
      method: 'POST', body: JSON.stringify(integration), signal, headers: { 'content-type': 'application/json' },
    });
    if (!isRecord(body) || typeof body.id !== 'string' || body.id === '') {
      throw new KeptnApiError('status', 'the registration answer carries no id', { status: 200 });
    }
    return body.id;
  }

  /**
   * The 1.x heartbeat (`PUT …/v1/uniform/registration/<id>/ping`, shipyard-controller
   * `KeepAlive`): answers the integration with its current subscriptions, 404
   * for an unknown id. Returns the parsed body; `heartbeat.ts` reads it.
   */
  async ping(id: string, signal?: AbortSignal): Promise<unknown> {
    return this.#json(this.#controlPlane(`/v1/uniform/registration/${encodeURIComponent(id)}/ping`), { method: 'PUT', signal });
  }

  async unregister(id: string, signal?: AbortSignal): Promise<void> {
    await this.#json(this.#controlPlane(`/v1/uniform/registration/${encodeURIComponent(id)}`), { method: 'DELETE', signal });
  }

  /** Sends log entries to the control plane's log ingestion. */
  async postLogs(logs: readonly object[], signal?: AbortSignal): Promise<void> {
    await this.#json(this.#controlPlane('/v1/log'), {
      method: 'POST', body: JSON.stringify({ logs }), signal, headers: { 'content-type': 'application/json' },
    });
  }

  /** Events the datastore holds for a Keptn context and type (used to learn whether a send arrived). */
  async eventsByContext(keptnContext: string, type: string, signal?: AbortSignal): Promise<readonly unknown[]> {
    const endpoint = this.#options.apiEndpoint;
    if (endpoint === undefined) throw new KeptnApiError('unreachable', 'no KEPTN_API_ENDPOINT: the datastore cannot be asked');
    const url = joinPath(endpoint, '/mongodb-datastore/event');
    url.searchParams.set('keptnContext', keptnContext);
    url.searchParams.set('type', type);
    url.searchParams.set('pageSize', '100');
    const body = await this.#json(url, { method: 'GET', signal });
    return isRecord(body) && Array.isArray(body.events) ? body.events : [];
  }

  #controlPlane(path: string): URL {
    const base = this.#options.controlPlaneUrl;
    if (base === undefined) throw new KeptnApiError('unreachable', 'no KEPTN_API_ENDPOINT: the control plane API is unknown');
    return joinPath(base, path);
  }

  /** Sends a request; returns the parsed JSON body of a 2xx answer (undefined when empty). */
  async #json(url: URL, request: { method: 'GET' | 'POST' | 'PUT' | 'DELETE'; body?: string; signal?: AbortSignal | undefined; headers?: Record<string, string> }): Promise<unknown> {
    const credentials = await this.#options.credentials.headers(request.signal);
    let response: Response<string>;
    try {
      response = await this.#http(url, {
        method: request.method,
        ...(request.body !== undefined && { body: request.body }),
        headers: { ...request.headers, ...credentials },
        agent: this.#options.agents.forGot(url),
        ...(request.signal && { signal: request.signal }),
      });
    } catch (error) {
      throw reduceTransportError(error);
    }
    if (response.statusCode === 401) this.#options.credentials.refused(credentials);
    if (response.statusCode < 200 || response.statusCode > 299) throw statusError(response);
    if (response.body.trim() === '') return undefined;
    try {
      return JSON.parse(response.body) as unknown;
    } catch {
      throw new KeptnApiError('status', `the control plane answered ${response.statusCode} with a body that is not JSON`, { status: response.statusCode });
    }
  }
}

/** What is safe to log of any failure: a `KeptnApiError`'s own summary, else just a message. */
export function describeFailure(error: unknown): { status?: number; code?: string; message: string } {
  if (error instanceof KeptnApiError) return error.toJSON();
  return { message: error instanceof Error ? error.message : String(error) };
}

function statusError(response: Response<string>): KeptnApiError {
  return keptnStatusError(response.statusCode, response.statusMessage, response.body, response.headers['retry-after']);
}

/** A non-2xx answer as an error: Keptn's error body is `{code, message}`; gateways answer HTML or plain text. */
export function keptnStatusError(status: number, statusMessage: string | undefined, body: string, retryAfterHeader: string | undefined): KeptnApiError {
  let message = `${status} ${statusMessage ?? ''}`.trim();
  let keptnBody = false;
  try {
    const parsed = JSON.parse(body) as unknown;
    if (isRecord(parsed) && typeof parsed.message === 'string') {
      message = `${status}: ${parsed.message}`;
      keptnBody = true;
    }
  } catch {
    const text = body.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
    if (text !== '') message = `${status}: ${text.slice(0, 200)}`;
  }
  const retryAfter = Number(retryAfterHeader);
  return new KeptnApiError('status', message, {
    status,
    keptnBody,
    ...(Number.isFinite(retryAfter) && retryAfter >= 0 && { retryAfterMs: retryAfter * 1_000 }),
  });
}

/** Keeps what is safe of a got error: its code and message, and whether the request went out. */
function reduceTransportError(error: unknown): KeptnApiError {
  if (!(error instanceof RequestError)) {
    if (error instanceof Error && error.name === 'AbortError') return new KeptnApiError('ambiguous', 'aborted', { code: 'ABORT_ERR' });
    return new KeptnApiError('ambiguous', error instanceof Error ? error.message : String(error));
  }
  const sent = error.timings?.upload !== undefined;
  return new KeptnApiError(sent ? 'ambiguous' : 'unreachable', error.message, { code: error.code });
}
