import { expect } from 'chai';
import { emulate, type CommandIo } from '../../lib/emulator/commands.ts';
import { DISCOVERY_PATH, TOKEN_PATH } from '../../lib/emulator/oauth-routes.ts';
import { call, useEmulators } from './harness.ts';

const OAUTH = { clientId: 'svc', clientSecret: 'emulator-s3cret' };
const POLL = '/controlPlane/v1/event/triggered/sh.keptn.event.test.triggered';
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

describe('emulator: OAuth mode', () => {
  const start = useEmulators();

  async function tokenFrom(url: string, headers: Record<string, string> = { authorization: basic(OAUTH.clientId, OAUTH.clientSecret) }, body = 'grant_type=client_credentials&scope=a%20b') {
    return call<{ access_token: string; token_type: string; expires_in: number; scope: string; error?: string }>(`${url}${TOKEN_PATH}`, {
      method: 'POST', body, headers: { ...FORM, ...headers },
    });
  }

  it('the discovery document names the token endpoint on the host the client reached', async () => {
    const emulator = await start({ oauth: OAUTH });
    const answer = await call<{ token_endpoint: string }>(`${emulator.url}${DISCOVERY_PATH}`);
    expect(answer.status).to.equal(200);
    expect(answer.body.token_endpoint).to.equal(`${emulator.url}${TOKEN_PATH}`);
  });

  it('issues bearer tokens for the client credentials (Basic or form fields), with their lifetime and scopes', async () => {
    const emulator = await start({ oauth: { ...OAUTH, tokenLifetimeMs: 1_500 } });
    const answer = await tokenFrom(emulator.url);
    expect(answer.status).to.equal(200);
    expect(answer.body).to.include({ token_type: 'Bearer', expires_in: 1.5, scope: 'a b' });
    const form = await tokenFrom(emulator.url, {}, 'grant_type=client_credentials&client_id=svc&client_secret=emulator-s3cret');
    expect(form.status).to.equal(200);
    expect(emulator.oauthTokens().map((token) => token.value)).to.deep.equal([answer.body.access_token, form.body.access_token]);
  });

  it('refuses a wrong secret (401 invalid_client) and another grant (400 unsupported_grant_type)', async () => {
    const emulator = await start({ oauth: OAUTH });
    const wrong = await tokenFrom(emulator.url, { authorization: basic('svc', 'nope') });
    expect(wrong.status).to.equal(401);
    expect(wrong.body.error).to.equal('invalid_client');
    const password = await tokenFrom(emulator.url, undefined, 'grant_type=password');
    expect(password.status).to.equal(400);
    expect(password.body.error).to.equal('unsupported_grant_type');
  });

  it('the Keptn routes want a valid bearer token: none, unknown, expired and revoked ones get 401', async () => {
    let now = Date.parse('2026-01-01T00:00:00Z');
    const emulator = await start({ oauth: { ...OAUTH, tokenLifetimeMs: 60_000 }, now: () => new Date(now) });
    const poll = (token?: string) => call(`${emulator.url}${POLL}`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
    expect((await poll()).body).to.include({ code: 401, message: 'missing bearer token' });
    expect((await poll('made-up')).body).to.include({ message: 'unknown or revoked bearer token' });
    const token = (await tokenFrom(emulator.url)).body.access_token;
    expect((await poll(token)).status).to.equal(200);
    now += 60_000;
    expect((await poll(token)).body).to.include({ message: 'expired bearer token' });
    const fresh = (await tokenFrom(emulator.url)).body.access_token;
    expect((await poll(fresh)).status).to.equal(200);
    emulator.revokeOAuthTokens();
    expect((await poll(fresh)).body).to.include({ message: 'unknown or revoked bearer token' });
  });

  it('with a token too, the Keptn routes want both', async () => {
    const emulator = await start({ oauth: OAUTH, token: 'x' });
    const bearer = `Bearer ${(await tokenFrom(emulator.url)).body.access_token}`;
    expect((await call(`${emulator.url}${POLL}`, { headers: { authorization: bearer } })).status).to.equal(401);
    expect((await call(`${emulator.url}${POLL}`, { headers: { 'authorization': bearer, 'x-token': 'x' } })).status).to.equal(200);
  });

  describe('emulate --oauth-client-id --oauth-client-secret', () => {
    function io(): CommandIo & { lines: string[]; errors: string[]; stop: () => void } {
      const controller = new AbortController();
      const lines: string[] = [];
      const errors: string[] = [];
      return { lines, errors, signal: controller.signal, stop: () => controller.abort(), out: (line) => { lines.push(line); controller.abort(); }, err: (line) => errors.push(line) };
    }

    it('prints the OAuth settings an agent needs', async () => {
      const recorded = io();
      expect(await emulate({ port: 0, oauthClientId: 'svc', oauthClientSecret: 's', oauthTokenLifetime: 30_000 }, recorded)).to.equal(0);
      expect(recorded.lines[0]).to.match(/ OAUTH_CLIENT_ID=svc OAUTH_CLIENT_SECRET=s OAUTH_SCOPES=keptn OAUTH_DISCOVERY=http:\/\/127\.0\.0\.1:\d+\/oauth\/\.well-known\/openid-configuration /);
    });

    it('one of the two alone is refused', async () => {
      const recorded = io();
      expect(await emulate({ port: 0, oauthClientId: 'svc' }, recorded)).to.equal(1);
      expect(recorded.errors).to.deep.equal(['keptn-distributor emulate: OAuth mode needs both --oauth-client-id and --oauth-client-secret']);
    });
  });
});
