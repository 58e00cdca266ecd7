/**
 * Process behaviour of the real executable: `node bin/keptn-distributor.js`
 * (which runs the built `dist/`; `npm test` builds it first). The first JSON
 * line `"ready"` on stdout is the readiness signal.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, statSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { startEmulator, type Emulator } from '../lib/emulator/server.ts';
import { NatsServer } from './helpers/nats-server.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = fileURLToPath(new URL('../bin/keptn-distributor.js', import.meta.url));
const BUILT = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const TOPIC = 'sh.keptn.event.deployment.triggered';
const TOKEN = 'process-token';

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

interface Spawned {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  stdout(): string;
  stderr(): string;
  /** The first JSON line on stdout whose message matches; rejects if the process exits first. */
  line(message: string | RegExp): Promise<Record<string, unknown>>;
}

const children: ChildProcess[] = [];

function spawnAgent(env: Record<string, string>): Spawned {
  const child = spawn(process.execPath, [BIN], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  let err = '';
  const waiters: Array<() => void> = [];
  const notify = (): void => { for (const waiter of waiters.splice(0)) waiter(); };
  child.stdout?.on('data', (chunk: Buffer) => { out += chunk.toString('utf8'); notify(); });
  child.stderr?.on('data', (chunk: Buffer) => { err += chunk.toString('utf8'); });
  const exited = new Promise<Exit>((resolve) => child.on('exit', (code, signal) => { resolve({ code, signal }); notify(); }));
  let done = false;
  void exited.then(() => { done = true; });
  const lines = (): Array<Record<string, unknown>> => out.split('\n').filter((line) => line.startsWith('{')).map((line) => {
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      return {};
    }
  });
  const line = async (message: string | RegExp): Promise<Record<string, unknown>> => {
    for (;;) {
      const found = lines().find((entry) => typeof entry.message === 'string'
        && (typeof message === 'string' ? entry.message === message : message.test(entry.message)));
      if (found) return found;
      if (done) throw new Error(`the process exited before logging ${String(message)}; stderr: ${err}`);
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return { child, exited, stdout: () => out, stderr: () => err, line };
}

/** Settings for a run against a control plane at `endpoint`, on free local ports. */
function settings(endpoint: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    KEPTN_API_ENDPOINT: endpoint,
    KEPTN_API_TOKEN: TOKEN,
    PUBSUB_TOPIC: TOPIC,
    API_PROXY_PORT: '0',
    HEALTH_ENDPOINT_PORT: '0',
    HTTP_POLLING_INTERVAL: '20ms',
    REGISTRATION_INTERVAL: '50ms',
    ...extra,
  };
}

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

async function listening(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

describe('the keptn-distributor process', function () {
  before(function () {
    let built: number;
    try {
      built = statSync(BUILT).mtimeMs;
    } catch {
      throw new Error('dist/cli.js is missing: run `npm run build` first (npm test does)');
    }
    if (newestSource(fileURLToPath(new URL('../lib', import.meta.url))) > built) {
      throw new Error('dist/ is older than lib/: run `npm run build` first (npm test does)');
    }
  });

  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await gone;
      }
    }
  });

  describe('against the emulator', () => {
    let emulator: Emulator;

    beforeEach(async () => {
      emulator = await startEmulator({ port: 0, token: TOKEN });
    });
    afterEach(async () => {
      await emulator.close();
    });

    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      it(`${signal} → a graceful shutdown and exit 0`, async () => {
        const agent = spawnAgent(settings(`${emulator.url}/api`, { SHUTDOWN_TIMEOUT: '5s' }));
        const ready = await agent.line('ready');
        expect(ready.healthPort).to.be.a('number');
        await emulator.waitFor(() => emulator.requests.poll > 0 && emulator.registrations().length === 1, { what: 'a poll and the registration' });
        agent.child.kill(signal);
        expect(await agent.exited).to.deep.equal({ code: 0, signal: null });
        expect((await agent.line('stopped')).level).to.equal('info');
        expect(agent.stderr()).to.equal('');
        expect(agent.stdout()).not.to.include(TOKEN);
      });
    }

    it('SIGTERM exits 0 within SHUTDOWN_TIMEOUT even when the control plane holds the shutdown up', async () => {
      const agent = spawnAgent(settings(`${emulator.url}/api`, { SHUTDOWN_TIMEOUT: '300ms', UNREGISTER_ON_SHUTDOWN: 'true' }));
      await agent.line(/^registered as /);
      emulator.faults.delay('unregister', 60_000);
      const started = Date.now();
      agent.child.kill('SIGTERM');
      expect(await agent.exited).to.deep.equal({ code: 0, signal: null });
      expect(Date.now() - started).to.be.below(3_000);
      expect(emulator.requests.unregister).to.equal(1);
    });

    it('a second SIGTERM during a long shutdown exits at once, non-zero', async () => {
      const agent = spawnAgent(settings(`${emulator.url}/api`, { SHUTDOWN_TIMEOUT: '60s', UNREGISTER_ON_SHUTDOWN: 'true' }));
      await agent.line(/^registered as /);
      // The DELETE takes effect at once and its answer never comes: the shutdown waits in it.
      emulator.faults.delay('unregister', 60_000);
      const deleting = new Promise((resolve) => emulator.once('unregistered', resolve));
      agent.child.kill('SIGTERM');
      await deleting;
      const started = Date.now();
      agent.child.kill('SIGTERM');
      expect(await agent.exited).to.deep.equal({ code: 1, signal: null });
      expect(Date.now() - started).to.be.below(2_000);
      expect(agent.stderr()).to.equal('keptn-distributor: SIGTERM again, exiting at once\n');
    });
  });

  describe('NATS mode (no KEPTN_API_ENDPOINT), against a real nats-server', () => {
    let nats: NatsServer;

    beforeEach(async () => {
      nats = await NatsServer.start();
    });
    afterEach(async () => {
      await nats.close();
    });

    it('runs (no longer refused with exit 2), connects, and SIGTERM → exit 0', async () => {
      const agent = spawnAgent({
        PUBSUB_URL: nats.url, PUBSUB_TOPIC: 'sh.keptn.>', API_PROXY_PORT: '0', HEALTH_ENDPOINT_PORT: '0', DISABLE_REGISTRATION: 'true',
      });
      expect((await agent.line('starting')).mode).to.equal('nats');
      await agent.line('subscribed');
      agent.child.kill('SIGTERM');
      expect(await agent.exited).to.deep.equal({ code: 0, signal: null });
      expect(agent.stderr()).to.equal('');
    });
  });

  it('a bad setting → exit 2 with one line on stderr naming it, and nothing on stdout', async () => {
    const agent = spawnAgent(settings('http://127.0.0.1:1/api', { HTTP_POLLING_INTERVAL: 'ten' }));
    expect(await agent.exited).to.deep.equal({ code: 2, signal: null });
    expect(agent.stderr()).to.match(/^keptn-distributor: HTTP_POLLING_INTERVAL="ten": expected .+\n$/);
    expect(agent.stderr().trim().split('\n')).to.have.length(1);
    expect(agent.stdout()).to.equal('');
  });

  it('the health port already in use → exit 1 with a clear message', async () => {
    const blocker = createServer();
    const busy = await listening(blocker);
    try {
      const agent = spawnAgent(settings('http://127.0.0.1:1/api', { HEALTH_ENDPOINT_PORT: String(busy) }));
      expect(await agent.exited).to.deep.equal({ code: 1, signal: null });
      expect(agent.stderr()).to.equal(
        `keptn-distributor: cannot listen on 0.0.0.0:${busy} for /health, /ready and /metrics (HEALTH_ENDPOINT_PORT): the port is already in use\n`);
      expect(agent.stdout()).not.to.include('"message":"ready"');
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('an error that escapes every handler → exit 1 with its stack, not its properties (a got error carries the token)', async () => {
    const script = `import { exitOnEscapedErrors } from ${JSON.stringify(BUILT)};
      exitOnEscapedErrors();
      void Promise.reject(Object.assign(new Error('boom'), { options: { headers: { 'x-token': '${TOKEN}' } } }));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let err = '';
    child.stderr.on('data', (chunk: Buffer) => { err += chunk.toString('utf8'); });
    const [code] = await once(child, 'exit') as [number | null];
    expect(code).to.equal(1);
    expect(err).to.match(/^keptn-distributor: unexpected failure: Error: boom\n {4}at /);
    expect(err).to.not.include(TOKEN);
  });
});
