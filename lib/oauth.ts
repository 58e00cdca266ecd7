/**
 * OAuth 2.0 client credentials (RFC 6749 §4.4), as the reference supports
 * from 0.13: the access token Keptn's calls carry as `Authorization: Bearer`.
 *
 * The token is fetched when first needed, kept, and fetched anew shortly
 * before it expires (`REFRESH_MARGIN_MS`) or after Keptn refused it; while
 * such a renewal fails, the token in hand serves until it expires. One fetch
 * at a time: callers arriving meanwhile share it. The token endpoint comes
 * from OAUTH_TOKEN_URL, or from the discovery document's `token_endpoint`,
 * fetched once it succeeds (a failed one is asked again on the next need).
 *
 * Failures are never fatal: the caller's request is not sent and is retried
 * as any unreachable call (relayed events wait in the outbox). They are
 * logged once per change of state, not once per call. Neither the client
 * secret nor a token ever reaches a log line: got errors are reduced here.
 */
import got, { RequestError, type Got } from 'got';
import type { OAuthClient } from './config.ts';
import type { EgressAgents } from './egress-proxy.ts';
import type { Logger } from './log.ts';
import { isRecord } from './json-object.ts';

/** Longest time before expiry at which a token is renewed (Go's oauth2 uses 10 s). */
export const REFRESH_MARGIN_MS = 10_000;

/** The token could not be had; says why, without any secret. */
export class OAuthError extends Error {
  override name = 'OAuthError';
}

export interface OAuthTokenSourceOptions {
  readonly client: OAuthClient;
  readonly agents: EgressAgents;
  /** Limit of one call to the token or discovery endpoint. */
  readonly timeoutMs: number;
  readonly logger: Logger;
  readonly now?: () => number;
}

interface Token {
  readonly value: string;
  /** When to fetch the next one (epoch ms); never for a token without `expires_in`. */
  readonly renewAt: number;
  /** When it stops being good (epoch ms): until then it serves while a renewal fails. */
  readonly expiresAt: number;
}

/**
 * When a token that lives `lifetimeMs` should be renewed: `REFRESH_MARGIN_MS`
 * before it expires, or at half its life for short-lived tokens.
 */
export function renewalTime(issuedAt: number, lifetimeMs: number | undefined): number {
  if (lifetimeMs === undefined) return Number.POSITIVE_INFINITY;
  return issuedAt + lifetimeMs - Math.min(REFRESH_MARGIN_MS, lifetimeMs / 2);
}

export class OAuthTokenSource {
  readonly #client: OAuthClient;
  readonly #agents: EgressAgents;
  readonly #http: Got;
  readonly #logger: Logger;
  readonly #now: () => number;
  #tokenUrl: URL | undefined;
  #token: Token | undefined;
  #fetching: Promise<Token> | undefined;
  /** The last failure logged; undefined while the endpoint answers. */
  #failure: string | undefined;

  constructor({ client, agents, timeoutMs, logger, now = Date.now }: OAuthTokenSourceOptions) {
    this.#client = client;
    this.#agents = agents;
    this.#logger = logger;
    this.#now = now;
    this.#tokenUrl = 'tokenUrl' in client.source ? client.source.tokenUrl : undefined;
    this.#http = got.extend({ timeout: { request: timeoutMs }, retry: { limit: 0 }, throwHttpErrors: false, followRedirect: false });
  }

  /** A valid access token; rejects with an `OAuthError` when none can be had now. */
  async token(): Promise<string> {
    const token = this.#token;
    if (token !== undefined && this.#now() < token.renewAt) return token.value;
    this.#fetching ??= this.#fetch().finally(() => { this.#fetching = undefined; });
    try {
      return (await this.#fetching).value;
    } catch (error) {
      // A renewal failed inside the margin: the token in hand is still good for a while.
      if (token !== undefined && this.#token === token && this.#now() < token.expiresAt) return token.value;
      throw error;
    }
  }

  /** Keptn refused `value` (401): the next call fetches a new token. */
  rejected(value: string): void {
    if (this.#token?.value === value) this.#token = undefined;
  }

  async #fetch(): Promise<Token> {
    try {
      const tokenUrl = this.#tokenUrl ?? await this.#discover();
      const token = await this.#requestToken(tokenUrl);
      this.#token = token;
      if (this.#failure !== undefined) this.#logger.info('OAuth token endpoint answers again', { tokenUrl: tokenUrl.href });
      this.#failure = undefined;
      this.#logger.debug('fetched an OAuth access token', { renewInMs: Number.isFinite(token.renewAt) ? token.renewAt - this.#now() : 'never' });
      return token;
    } catch (error) {
      const failure = error instanceof OAuthError ? error : new OAuthError(error instanceof Error ? error.message : String(error));
      if (failure.message !== this.#failure) {
        this.#logger.warn('no OAuth access token: calls to Keptn wait until the token endpoint answers', { error: failure.message });
      }
      this.#failure = failure.message;
      throw failure;
    }
  }

  /** The discovery document's `token_endpoint`, kept once known. */
  async #discover(): Promise<URL> {
    const source = this.#client.source;
    if (!('discoveryUrl' in source)) throw new OAuthError('no OAuth token URL');
    const body = await this.#call(source.discoveryUrl, { method: 'GET' }, 'OAuth discovery');
    const endpoint = isRecord(body) ? body.token_endpoint : undefined;
    let url: URL | undefined;
    try {
      url = typeof endpoint === 'string' ? new URL(endpoint) : undefined;
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
      throw new OAuthError(`OAuth discovery at ${source.discoveryUrl.href} names no http(s) token_endpoint`);
    }
    this.#tokenUrl = url;
    return url;
  }

  async #requestToken(tokenUrl: URL): Promise<Token> {
    const { clientId, clientSecret, scopes } = this.#client;
    const issuedAt = this.#now();
    // client_secret_basic (RFC 6749 §2.3.1): id and secret form-encoded, then Basic.
    const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64');
    const body = await this.#call(tokenUrl, {
      method: 'POST',
      headers: { 'authorization': `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: scopes.join(' ') }).toString(),
    }, 'OAuth token endpoint');
    if (!isRecord(body) || typeof body.access_token !== 'string' || body.access_token === '') {
      throw new OAuthError(`the OAuth token endpoint ${tokenUrl.href} answered without an access_token`);
    }
    const expiresIn = Number(body.expires_in);
    const lifetimeMs = body.expires_in !== undefined && Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn * 1_000 : undefined;
    return {
      value: body.access_token,
      renewAt: renewalTime(issuedAt, lifetimeMs),
      expiresAt: lifetimeMs === undefined ? Number.POSITIVE_INFINITY : issuedAt + lifetimeMs,
    };
  }

  /** One call; the JSON of a 2xx answer, or an `OAuthError` without secrets. */
  async #call(url: URL, request: { method: 'GET' | 'POST'; headers?: Record<string, string>; body?: string }, what: string): Promise<unknown> {
    let response;
    try {
      response = await this.#http(url, {
        ...request,
        agent: this.#agents.forGot(url),
      });
    } catch (error) {
      const code = error instanceof RequestError ? error.code : undefined;
      throw new OAuthError(`${what} ${url.href} unreachable${code ? ` (${code})` : ''}`);
    }
    if (response.statusCode < 200 || response.statusCode > 299) {
      throw new OAuthError(`${what} ${url.href} answered ${response.statusCode}${errorOf(response.body)}`);
    }
    try {
      return JSON.parse(response.body) as unknown;
    } catch {
      throw new OAuthError(`${what} ${url.href} answered ${response.statusCode} with a body that is not JSON`);
    }
  }
}

/** The RFC 6749 §5.2 `error` of an error answer, when there is one. */
function errorOf(body: string): string {
  try {
    const parsed = JSON.parse(body) as unknown;
    if (isRecord(parsed) && typeof parsed.error === 'string') return ` (${parsed.error.slice(0, 100)})`;
  } catch {
    // Not JSON: nothing more to say.
  }
  return '';
}
