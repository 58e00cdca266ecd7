/**
 * Egress end to end: the real agent against the emulator with OAuth on, and
 * through a loopback CONNECT proxy, everything on 127.0.0.1. Nothing
 * accepted may be lost on the way: not across token renewals, a revocation,
 * a token endpoint outage or a proxy outage.
 */
import { expect } from 'chai';
import { DISCOVERY_PATH, TOKEN_PATH } from '../../lib/emulator/oauth-routes.ts';
import { startEmulator, type Emulator, type TriggeredEvent } from '../../lib/emulator/server.ts';
import { startLoopbackProxy, type LoopbackProxy } from '../helpers/http-proxy.ts';
import { Recipient } from '../helpers/recipient.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';

const TOPIC = 'sh.keptn.event.test.triggered';
const CLIENT_ID = 'e2e-agent';
const CLIENT_SECRET = 'e2e-oauth-client-secret';
const PROXY_PASSWORD = 'e2e-proxy-password';

describe('e2e: OAuth and outgoing proxies', () => {
  let emulator: Emulator;
  let recipient: Recipient;
  let proxy: LoopbackProxy | undefined;
  let agent: RunningAgent | undefined;

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    await proxy?.stop();
    proxy = undefined;
    await emulator.close();
    await recipient.close();
  });

  async function start(env: Record<string, string>): Promise<RunningAgent> {
    agent = await startTestAgent({ KEPTN_API_ENDPOINT: `${emulator.url}/api`, PUBSUB_TOPIC: TOPIC, ...recipient.env, ...env });
    return agent;
  }

  function trigger(): TriggeredEvent {
    return emulator.trigger({ type: TOPIC, project: 'sockshop', stage: 'dev', service: 'carts' });
  }

  /** The recipient's `.started` or `.finished` for a task, relayed through the agent. */
  async function relay(task: TriggeredEvent, kind: 'started' | 'finished'): Promise<number> {
    const response = await fetch(`http://127.0.0.1:${agent!.addresses.proxyPort}/event`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({
        specversion: '1.0', id: `${task.id}-${kind}`, source: 'e2e-service', type: `sh.keptn.event.test.${kind}`,
        shkeptncontext: task.shkeptncontext, triggeredid: task.id,
        data: { ...(task.data as object), status: 'succeeded', ...(kind === 'finished' && { result: 'pass' }) },
      }),
    });
    return response.status;
  }

  /** Both answers to a task, in order; the statuses of the two relays. */
  async function relayAnswers(task: TriggeredEvent): Promise<number[]> {
    return [await relay(task, 'started'), await relay(task, 'finished')];
  }

  /** Triggers a task, waits for its dispatch, relays its `.started` and `.finished`, and waits for the control plane to close it. */
  async function roundTrip(): Promise<void> {
    const task = trigger();
    await recipient.received(recipient.ids().length + 1);
    expect(recipient.ids()).to.include(task.id);
    expect(await relayAnswers(task)).to.deep.equal([202, 202]);
    await emulator.waitFor(() => !emulator.openTriggered().some((open) => open.id === task.id), { timeout: 10_000, what: `task ${task.id} to close` });
  }

  function expectNoSecretsIn(text: string, secrets: readonly string[]): void {
    for (const secret of secrets) expect(text, 'a secret in the logs').to.not.include(secret);
  }

  describe('OAuth', () => {
    const oauthEnv = (emulatorUrl: string): Record<string, string> => ({
      OAUTH_CLIENT_ID: CLIENT_ID, OAUTH_CLIENT_SECRET: CLIENT_SECRET, OAUTH_SCOPES: 'keptn:events,keptn:uniform',
      OAUTH_DISCOVERY: `${emulatorUrl}${DISCOVERY_PATH}`,
    });

    it('polls, dispatches, relays, registers and proxies with a bearer token renewed mid-run; nothing lost, no secret logged', async () => {
      emulator = await startEmulator({ port: 0, oauth: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, tokenLifetimeMs: 300 } });
      recipient = await Recipient.start();
      await start({ ...oauthEnv(emulator.url), DISABLE_REGISTRATION: 'false', REGISTRATION_INTERVAL: '50ms' });
      await emulator.waitFor(() => emulator.registrations().length === 1, { what: 'the registration' });
      // Tokens live 300 ms and are renewed at half their life: several renewals happen while tasks go round.
      const started = emulator.oauthTokens().length;
      for (let i = 0; i < 6; i++) await roundTrip();
      await emulator.waitFor(() => emulator.oauthTokens().length >= started + 2, { what: 'token renewals' });
      const proxied = await fetch(`http://127.0.0.1:${agent!.addresses.proxyPort}/controlPlane/v1/project/sockshop`);
      expect(proxied.status).to.not.equal(401);
      expect(emulator.received({ type: 'sh.keptn.event.test.finished' })).to.have.length(6);
      expect(emulator.oauthTokens().every((token) => token.scopes.join(' ') === 'keptn:events keptn:uniform')).to.equal(true);
      expectNoSecretsIn(agent!.logs.text(), [CLIENT_SECRET, ...emulator.oauthTokens().map((token) => token.value)]);
    });

    it('revoked tokens: the 401 drops the token, the agent fetches a new one and goes on', async () => {
      emulator = await startEmulator({ port: 0, oauth: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, tokenLifetimeMs: 60_000 } });
      recipient = await Recipient.start();
      await start({ ...oauthEnv(emulator.url), OAUTH_DISCOVERY: '', OAUTH_TOKEN_URL: `${emulator.url}${TOKEN_PATH}` });
      await roundTrip();
      expect(emulator.oauthTokens()).to.have.length(1);
      emulator.revokeOAuthTokens();
      await roundTrip();
      expect(emulator.oauthTokens()).to.have.length.of.at.least(2);
    });

    it('token endpoint down: relayed events wait in the outbox and arrive once it answers again', async () => {
      emulator = await startEmulator({ port: 0, oauth: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, tokenLifetimeMs: 60_000 } });
      recipient = await Recipient.start();
      await start(oauthEnv(emulator.url));
      const task = trigger();
      await recipient.received(1);
      emulator.revokeOAuthTokens();
      emulator.faults.fail('oauth', { status: 503, times: 5 });
      expect(await relayAnswers(task)).to.deep.equal([202, 202]);
      await emulator.waitFor(() => emulator.received({ type: 'sh.keptn.event.test.finished' }).length === 1, { timeout: 15_000, what: 'the relayed event' });
      expect(agent!.logs.entries().filter((entry) => entry.message === 'no OAuth access token: calls to Keptn wait until the token endpoint answers')).to.have.length.of.at.least(1);
    });
  });

  describe('outgoing proxy', () => {
    beforeEach(async () => {
      emulator = await startEmulator({ port: 0, token: 'e2e-proxy-token' });
      recipient = await Recipient.start();
      proxy = await startLoopbackProxy({ credentials: `agent:${PROXY_PASSWORD}` });
    });

    function proxyEnv(extra: Record<string, string> = {}): Record<string, string> {
      return { KEPTN_API_TOKEN: 'e2e-proxy-token', HTTP_PROXY: `http://agent:${PROXY_PASSWORD}@127.0.0.1:${proxy!.port}`, ...extra };
    }

    it('every call to Keptn goes through HTTP_PROXY; the recipient is reached directly; the proxy password is never logged', async () => {
      await start(proxyEnv({ DISABLE_REGISTRATION: 'false' }));
      await roundTrip();
      const proxied = await fetch(`http://127.0.0.1:${agent!.addresses.proxyPort}/controlPlane/v1/project/sockshop`);
      expect(proxied.status).to.not.equal(407);
      const emulatorHost = new URL(emulator.url).host;
      expect(proxy!.seen.length).to.be.greaterThan(0);
      expect(proxy!.seen.every((seen) => seen.method === 'CONNECT' && seen.target === emulatorHost)).to.equal(true);
      expect(emulator.registrations()).to.have.length(1);
      expect(emulator.received({ type: 'sh.keptn.event.test.finished' })).to.have.length(1);
      expectNoSecretsIn(agent!.logs.text(), [PROXY_PASSWORD]);
    });

    it('NO_PROXY: calls to a listed host bypass the proxy', async () => {
      await start(proxyEnv({ NO_PROXY: 'localhost,127.0.0.0/8' }));
      await roundTrip();
      expect(proxy!.seen).to.deep.equal([]);
    });

    it('proxy down: relayed events wait in the outbox, and flow once it is back', async () => {
      await start(proxyEnv());
      const task = trigger();
      await recipient.received(1);
      await proxy!.stop();
      expect(await relayAnswers(task)).to.deep.equal([202, 202]);
      await emulator.waitFor(() => emulator.received().length === 0 && agent!.logs.text().includes('cannot deliver relayed events'), { what: 'a failed delivery' });
      await proxy!.start();
      await emulator.waitFor(() => emulator.received({ type: 'sh.keptn.event.test.finished' }).length === 1, { timeout: 15_000, what: 'the relayed event' });
    });
  });

  describe('API_PROXY_HTTP_TIMEOUT and API_PROXY_MAX_PAYLOAD_BYTES_KB', () => {
    beforeEach(async () => {
      emulator = await startEmulator({ port: 0, token: 'e2e-limits-token' });
      recipient = await Recipient.start();
    });

    it('a proxied call slower than API_PROXY_HTTP_TIMEOUT is a 504 naming the limit', async () => {
      await start({ KEPTN_API_TOKEN: 'e2e-limits-token', API_PROXY_HTTP_TIMEOUT: '300ms' });
      emulator.faults.delay('proxy', 2_000);
      const response = await fetch(`http://127.0.0.1:${agent!.addresses.proxyPort}/controlPlane/v1/project/sockshop`);
      expect(response.status).to.equal(504);
      expect(await response.json()).to.deep.equal({ message: 'no answer from the Keptn API within 300 ms' });
    });

    it('API_PROXY_MAX_PAYLOAD_BYTES_KB=1: a relayed event over 1 KiB is a 413, a small one is taken', async () => {
      await start({ KEPTN_API_TOKEN: 'e2e-limits-token', API_PROXY_MAX_PAYLOAD_BYTES_KB: '1' });
      const task = trigger();
      await recipient.received(1);
      const event = { specversion: '1.0', id: 'big', source: 's', type: 'sh.keptn.event.test.started', shkeptncontext: task.shkeptncontext, triggeredid: task.id };
      const send = (body: object): Promise<Response> => fetch(`http://127.0.0.1:${agent!.addresses.proxyPort}/event`, {
        method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(body),
      });
      const big = await send({ ...event, data: { ...(task.data as object), blob: 'x'.repeat(1024) } });
      expect(big.status).to.equal(413);
      expect(((await big.json()) as { message: string }).message).to.equal('the event is larger than 1024 bytes, the limit set by API_PROXY_MAX_PAYLOAD_BYTES_KB');
      expect((await send({ ...event, id: 'small', data: task.data })).status).to.equal(202);
    });
  });
});
