/**
 * The emulator's OAuth mode: an authorization server for the client
 * credentials grant (RFC 6749 §4.4) beside the Keptn routes, which then want
 * `Authorization: Bearer <token>` with a token it issued that has not
 * expired. Tokens are short-lived on request, so tests can watch the agent
 * renew them; `revokeAll` makes Keptn refuse every token issued so far.
 *
 *     GET  /oauth/.well-known/openid-configuration  → {issuer, token_endpoint}
 *     POST /oauth/token  (form: grant_type=client_credentials, scope; client id and secret as Basic or form fields)
 */
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { json } from './json-http.ts';
import type { Route, RouteRequest } from './router.ts';

export interface OAuthEmulationOptions {
  readonly clientId: string;
  readonly clientSecret: string;
  /** How long an issued token is good for; default 5 minutes. */
  readonly tokenLifetimeMs?: number;
}

/** A token the emulator issued. */
export interface IssuedToken {
  readonly value: string;
  readonly scopes: readonly string[];
  readonly expiresAt: number;
}

export const DISCOVERY_PATH = '/oauth/.well-known/openid-configuration';
export const TOKEN_PATH = '/oauth/token';
const DEFAULT_LIFETIME_MS = 5 * 60_000;

export class OAuthIssuer {
  readonly #options: OAuthEmulationOptions;
  readonly #now: () => number;
  readonly #issued: IssuedToken[] = [];
  /** Tokens issued before this are refused. */
  #revokedBefore = 0;

  constructor(options: OAuthEmulationOptions, now: () => number = Date.now) {
    this.#options = options;
    this.#now = now;
  }

  /** Every token issued so far, oldest first. */
  get issued(): readonly IssuedToken[] {
    return [...this.#issued];
  }

  /** From now on, every token issued so far is refused (as after a key rotation). */
  revokeAll(): void {
    this.#revokedBefore = this.#issued.length;
  }

  routes(): Route[] {
    return [
      { method: 'GET', pattern: DISCOVERY_PATH, key: 'oauth', auth: false, body: 'none', handle: (request) => discovery(request.headers) },
      {
        method: 'POST', pattern: TOKEN_PATH, key: 'oauth', auth: false, body: 'text', consumes: ['application/x-www-form-urlencoded'],
        handle: (request) => this.#issue(request),
      },
    ];
  }

  /** Why a Keptn route refuses the request's bearer token, or undefined when it passes. */
  refusal(headers: IncomingHttpHeaders): string | undefined {
    const bearer = /^Bearer\s+(\S+)$/i.exec(headers.authorization ?? '')?.[1];
    if (bearer === undefined) return 'missing bearer token';
    const index = this.#issued.findIndex((token) => token.value === bearer);
    if (index < 0 || index < this.#revokedBefore) return 'unknown or revoked bearer token';
    return this.#now() < this.#issued[index]!.expiresAt ? undefined : 'expired bearer token';
  }

  #issue(request: RouteRequest): ReturnType<typeof json> {
    const form = new URLSearchParams(request.text);
    if (form.get('grant_type') !== 'client_credentials') {
      return json(400, { error: 'unsupported_grant_type', error_description: 'only client_credentials is served' });
    }
    const [id, secret] = clientOf(request.headers, form);
    if (id !== this.#options.clientId || secret !== this.#options.clientSecret) {
      return json(401, { error: 'invalid_client', error_description: 'unknown client or wrong secret' }, { 'www-authenticate': 'Basic realm="emulator"' });
    }
    const lifetimeMs = this.#options.tokenLifetimeMs ?? DEFAULT_LIFETIME_MS;
    const scopes = (form.get('scope') ?? '').split(' ').filter((scope) => scope !== '');
    const token: IssuedToken = { value: randomBytes(18).toString('base64url'), scopes, expiresAt: this.#now() + lifetimeMs };
    this.#issued.push(token);
    return json(200, { access_token: token.value, token_type: 'Bearer', expires_in: lifetimeMs / 1_000, scope: scopes.join(' ') }, { 'cache-control': 'no-store' });
  }
}

/** The discovery document, naming the token endpoint on the host the client reached. */
function discovery(headers: IncomingHttpHeaders): ReturnType<typeof json> {
  const base = `http://${headers.host ?? '127.0.0.1'}/oauth`;
  return json(200, { issuer: base, token_endpoint: `${base}/token`, grant_types_supported: ['client_credentials'] });
}

/** Client id and secret: HTTP Basic (form-encoded inside, RFC 6749 §2.3.1), else the form's fields. */
function clientOf(headers: IncomingHttpHeaders, form: URLSearchParams): [string | null, string | null] {
  const basic = /^Basic\s+(\S+)$/i.exec(headers.authorization ?? '')?.[1];
  if (basic !== undefined) {
    const decoded = Buffer.from(basic, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return [null, null];
    try {
      return [decodeURIComponent(decoded.slice(0, colon)), decodeURIComponent(decoded.slice(colon + 1))];
    } catch {
      return [null, null];
    }
  }
  return [form.get('client_id'), form.get('client_secret')];
}
