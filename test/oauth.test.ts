import { expect } from 'chai';
import type { OAuthClient } from '../lib/config.ts';
import { KeptnCredentials } from '../lib/credentials.ts';
import { EgressAgents } from '../lib/egress-proxy.ts';
import { startEmulator, type Emulator } from '../lib/emulator/server.ts';
import { DISCOVERY_PATH, TOKEN_PATH } from '../lib/emulator/oauth-routes.ts';
import { KeptnApiError } from '../lib/keptn-api.ts';
import { OAuthError, OAuthTokenSource, REFRESH_MARGIN_MS, renewalTime } from '../lib/oauth.ts';
import { logSink, type LogSink } from './helpers/log-sink.ts';

const CLIENT_ID = 'agent-client';
const CLIENT_SECRET = 'oauth-unit-client-secret';
const LIFETIME_MS = 60_000;

describe('oauth', () => {
  let emulator: Emulator;
  let agents: EgressAgents;
  let logs: LogSink;
  let clock: number;

  beforeEach(async () => {
    emulator = await startEmulator({ port: 0, oauth: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, tokenLifetimeMs: LIFETIME_MS } });
    agents = new EgressAgents({ httpsProxy: undefined, httpProxy: undefined, proxyBypass: [] });
    logs = logSink({ secrets: [CLIENT_SECRET] });
    clock = 1_000_000;
  });
  afterEach(async () => {
    agents.close();
    await emulator.close();
  });

  function source(client: Partial<OAuthClient> = {}): OAuthTokenSource {
    return new OAuthTokenSource({
      client: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, scopes: ['keptn:read', 'keptn:write'], source: { tokenUrl: new URL(`${emulator.url}${TOKEN_PATH}`) }, ...client },
      agents, timeoutMs: 2_000, logger: logs.logger, now: () => clock,
    });
  }

  describe('renewalTime', () => {
    it('renews 10 s before expiry, at half the life of shorter tokens, never without expires_in', () => {
      expect(renewalTime(0, 300_000)).to.equal(300_000 - REFRESH_MARGIN_MS);
      expect(renewalTime(0, 4_000)).to.equal(2_000);
      expect(renewalTime(0, undefined)).to.equal(Number.POSITIVE_INFINITY);
    });
  });

  it('fetches a token with the client credentials and scopes, then serves it from the cache', async () => {
    const tokens = source();
    const first = await tokens.token();
    expect(await tokens.token()).to.equal(first);
    expect(emulator.requests.oauth).to.equal(1);
    expect(emulator.oauthTokens().map((token) => [token.value, token.scopes])).to.deep.equal([[first, ['keptn:read', 'keptn:write']]]);
  });

  it('renews the token once it is within the margin of its expiry', async () => {
    const tokens = source();
    const first = await tokens.token();
    clock += LIFETIME_MS - REFRESH_MARGIN_MS - 1;
    expect(await tokens.token()).to.equal(first);
    clock += 1;
    const second = await tokens.token();
    expect(second).to.not.equal(first);
    expect(emulator.requests.oauth).to.equal(2);
  });

  it('a renewal that fails inside the margin leaves the token in hand in use until it expires', async () => {
    const tokens = source();
    const first = await tokens.token();
    emulator.faults.fail('oauth', { status: 503, times: 2 });
    clock += LIFETIME_MS - 1;
    expect(await tokens.token()).to.equal(first);
    clock += 1;
    const error = await tokens.token().catch((thrown: unknown) => thrown);
    expect(error).to.be.instanceOf(OAuthError);
    expect(await tokens.token()).to.not.equal(first);
  });

  it('callers arriving while a token is fetched share that one fetch', async () => {
    const tokens = source();
    const all = await Promise.all(Array.from({ length: 10 }, () => tokens.token()));
    expect(new Set(all).size).to.equal(1);
    expect(emulator.requests.oauth).to.equal(1);
  });

  it('a token Keptn refused is dropped: the next call fetches a new one; refusing an older token changes nothing', async () => {
    const tokens = source();
    const first = await tokens.token();
    tokens.rejected('some-older-token');
    expect(await tokens.token()).to.equal(first);
    tokens.rejected(first);
    expect(await tokens.token()).to.not.equal(first);
    expect(emulator.requests.oauth).to.equal(2);
  });

  it('finds the token endpoint through discovery, once', async () => {
    const tokens = source({ source: { discoveryUrl: new URL(`${emulator.url}${DISCOVERY_PATH}`) } });
    await tokens.token();
    tokens.rejected(await tokens.token());
    await tokens.token();
    // One discovery, two token requests.
    expect(emulator.requests.oauth).to.equal(3);
  });

  it('a failed discovery is asked again on the next need', async () => {
    emulator.faults.fail('oauth', { status: 503 });
    const tokens = source({ source: { discoveryUrl: new URL(`${emulator.url}${DISCOVERY_PATH}`) } });
    const error = await tokens.token().catch((thrown: unknown) => thrown);
    expect(error).to.be.instanceOf(OAuthError).with.property('message').that.matches(/OAuth discovery .* answered 503/);
    expect(await tokens.token()).to.be.a('string');
  });

  it('a wrong secret is an OAuthError naming the endpoint and the RFC 6749 error, without the secret', async () => {
    const tokens = source({ clientSecret: 'wrong-secret-value' });
    const error = await tokens.token().catch((thrown: unknown) => thrown);
    expect(error).to.be.instanceOf(OAuthError).with.property('message').that.matches(/answered 401 \(invalid_client\)/);
    expect(String((error as Error).message)).to.not.include('wrong-secret-value');
  });

  it('logs a failing token endpoint once per change of state, and its recovery', async () => {
    emulator.faults.fail('oauth', { status: 500, times: 3 });
    const tokens = source();
    for (let i = 0; i < 3; i++) await tokens.token().catch(() => undefined);
    await tokens.token();
    const lines = logs.entries().filter((entry) => entry.level === 'warn' || entry.level === 'info').map((entry) => entry.message);
    expect(lines).to.deep.equal(['no OAuth access token: calls to Keptn wait until the token endpoint answers', 'OAuth token endpoint answers again']);
    expect(logs.text()).to.not.include(CLIENT_SECRET);
    for (const token of emulator.oauthTokens()) expect(logs.text()).to.not.include(token.value);
  });

  it('an unreachable token endpoint is an OAuthError with the error code', async () => {
    const url = new URL(`${emulator.url}${TOKEN_PATH}`);
    await emulator.close();
    const error = await source({ source: { tokenUrl: url } }).token().catch((thrown: unknown) => thrown);
    expect(error).to.be.instanceOf(OAuthError).with.property('message').that.matches(/unreachable \(ECONNREFUSED\)/);
  });

  describe('KeptnCredentials', () => {
    it('x-token alone; bearer alone; both when both are set (as the reference)', async () => {
      expect(await new KeptnCredentials('api-token').headers()).to.deep.equal({ 'x-token': 'api-token' });
      const fixed = { token: () => Promise.resolve('access'), rejected: () => undefined };
      expect(await new KeptnCredentials('', fixed).headers()).to.deep.equal({ authorization: 'Bearer access' });
      expect(await new KeptnCredentials('api-token', fixed).headers()).to.deep.equal({ 'x-token': 'api-token', authorization: 'Bearer access' });
      expect(new KeptnCredentials('api-token', fixed).headerNames).to.deep.equal(['x-token', 'authorization']);
      expect(KeptnCredentials.none().headerNames).to.deep.equal([]);
    });

    it('no token to be had: an unreachable KeptnApiError (nothing was sent, safe to retry)', async () => {
      const failing = { token: () => Promise.reject(new OAuthError('token endpoint down')), rejected: () => undefined };
      const error = await new KeptnCredentials('', failing).headers().catch((thrown: unknown) => thrown);
      expect(error).to.be.instanceOf(KeptnApiError).and.include({ kind: 'unreachable', code: 'EOAUTH', message: 'token endpoint down' });
    });

    it('the request’s signal ends the wait for a hanging token endpoint (a poll’s limit, shutdown)', async () => {
      const hanging = { token: () => new Promise<string>(() => undefined), rejected: () => undefined };
      const controller = new AbortController();
      const waiting = new KeptnCredentials('', hanging).headers(controller.signal).catch((thrown: unknown) => thrown);
      controller.abort(new Error('shutting down'));
      expect(await waiting).to.be.instanceOf(KeptnApiError).and.include({ kind: 'unreachable', message: 'shutting down' });
    });

    it('a 401 to a bearer token reports exactly that token refused', () => {
      const refused: string[] = [];
      const credentials = new KeptnCredentials('t', { token: () => Promise.resolve('x'), rejected: (token) => { refused.push(token); } });
      credentials.refused({ 'x-token': 't' });
      credentials.refused({ 'x-token': 't', 'authorization': 'Bearer abc' });
      expect(refused).to.deep.equal(['abc']);
    });
  });
});
