/**
 * How the agent proves who it is to Keptn, in one place: `x-token` when
 * KEPTN_API_TOKEN is set, `Authorization: Bearer` when OAuth is on, both
 * when both are (as the reference). Every caller that talks to Keptn asks
 * here for its headers and reports a 401, rather than building them itself.
 */
import { KeptnApiError } from './keptn-api.ts';
import type { OAuthTokenSource } from './oauth.ts';

export class KeptnCredentials {
  readonly #token: string;
  readonly #oauth: Pick<OAuthTokenSource, 'token' | 'rejected'> | undefined;

  /** `token`: the API token ('' for none); `oauth`: the access token source, when OAuth is on. */
  constructor(token: string, oauth?: Pick<OAuthTokenSource, 'token' | 'rejected'>) {
    this.#token = token;
    this.#oauth = oauth;
  }

  /** No credentials at all (in-cluster calls, where the services take none). */
  static none(): KeptnCredentials {
    return new KeptnCredentials('');
  }

  /** The names of the headers this agent sets (a proxied client's own are replaced). */
  get headerNames(): readonly string[] {
    return [...(this.#token !== '' ? ['x-token'] : []), ...(this.#oauth ? ['authorization'] : [])];
  }

  /**
   * The headers of one request. Rejects with an `unreachable` KeptnApiError
   * when no OAuth token can be had: nothing is sent, so it is safe to retry.
   * `signal` (the request's) stops the wait for a token, so a hanging token
   * endpoint neither outlasts a poll's time limit nor holds up shutdown.
   */
  async headers(signal?: AbortSignal): Promise<Record<string, string>> {
    const headers: Record<string, string> = this.#token !== '' ? { 'x-token': this.#token } : {};
    if (this.#oauth) {
      try {
        headers.authorization = `Bearer ${await untilAborted(this.#oauth.token(), signal)}`;
      } catch (error) {
        throw new KeptnApiError('unreachable', error instanceof Error ? error.message : String(error), { code: 'EOAUTH' });
      }
    }
    return headers;
  }

  /** Keptn answered 401 to a request sent with `headers`: a refused bearer token is not used again. */
  refused(headers: Readonly<Record<string, string>>): void {
    const bearer = /^Bearer (.+)$/.exec(headers.authorization ?? '')?.[1];
    if (bearer !== undefined) this.#oauth?.rejected(bearer);
  }
}

/** `promise`, or a rejection as soon as `signal` aborts; the promise runs on (a token fetch is shared by every caller). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason as Error); };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => { signal.removeEventListener('abort', onAbort); resolve(value); },
      (error: unknown) => { signal.removeEventListener('abort', onAbort); reject(error as Error); },
    );
  });
}
