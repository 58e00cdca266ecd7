/**
 * `keptn-distributor demo`: the whole round trip on one machine, with one
 * command. An emulated control plane opens a few tasks; the real agent polls
 * them and dispatches each to the example Keptn-service, which answers
 * `.started` and `.finished` through the agent's relay; the control plane
 * closes the tasks. Ends with a summary, exit 0 when every task closed.
 */
import { createServer } from 'node:net';
import { Command, InvalidArgumentError, Option } from 'commander';
import { startAgent } from '../agent.ts';
import { loadConfig, secretsOf } from '../config.ts';
import { startEmulator } from '../emulator/server.ts';
import { createLogger } from '../log.ts';
import type { Writable } from 'node:stream';
import { startExampleService } from './example-service.ts';

const TASK_TYPE = 'sh.keptn.event.hello.triggered';
const DEMO_TOKEN = 'demo-token';
/** Enough for a slow machine to poll, dispatch and relay a few tasks. */
const ROUND_TRIP_TIMEOUT_MS = 30_000;

export interface DemoIo {
  readonly signal: AbortSignal;
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** Where the agent's own JSON log lines go (warnings and errors only). */
  readonly agentLog: Writable;
  readonly setExitCode: (code: number) => void;
}

export interface DemoOptions {
  readonly tasks: number;
}

export function addDemoCommand(program: Command, io: DemoIo): void {
  program.command('demo')
    .description('run an emulated control plane, the agent and an example Keptn-service: a full triggered → started → finished round trip')
    .addOption(new Option('--tasks <n>', 'how many tasks to trigger').default(3).argParser(parseTaskCount))
    .action(async (options: DemoOptions) => {
      io.setExitCode(await demo(options, io));
    });
}

function parseTaskCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 1_000) throw new InvalidArgumentError('expected a whole number from 1 to 1000');
  return n;
}

/** Runs the round trip; returns the exit code (0 every task closed, 1 otherwise). */
export async function demo({ tasks }: DemoOptions, io: DemoIo): Promise<number> {
  const started = Date.now();
  const emulator = await startEmulator({ port: 0, token: DEMO_TOKEN, log: (line) => io.out(`control plane  ${line}`) });
  const relayPort = await freeLoopbackPort();
  const service = await startExampleService({
    port: 0, relayUrl: `http://127.0.0.1:${relayPort}/event`, log: (line) => io.out(`               ${line}`),
  });
  const config = loadConfig({
    env: {
      KEPTN_API_ENDPOINT: emulator.url,
      KEPTN_API_TOKEN: DEMO_TOKEN,
      PUBSUB_TOPIC: TASK_TYPE,
      PUBSUB_RECIPIENT_PORT: new URL(service.url).port,
      API_PROXY_PORT: String(relayPort),
      HEALTH_ENDPOINT_PORT: '0',
      HTTP_POLLING_INTERVAL: '500ms',
      INTEGRATION_NAME: 'example-service',
      SHUTDOWN_TIMEOUT: '5s',
      LOG_LEVEL: 'warn',
    },
  });
  const stop = new AbortController();
  const onInterrupt = (): void => stop.abort();
  io.signal.addEventListener('abort', onInterrupt, { once: true });
  const agent = startAgent(config, {
    signal: stop.signal,
    logger: createLogger({ level: config.logLevel, secrets: secretsOf(config), stream: io.agentLog }),
  });
  let closedAll = false;
  try {
    await agent.ready;
    io.out(`demo           agent polls ${emulator.url} for ${TASK_TYPE}, dispatches to ${service.url}, relays on port ${relayPort}`);
    for (let i = 1; i <= tasks; i++) emulator.trigger({ type: TASK_TYPE, project: 'demo', stage: 'dev', service: `service-${i}` });
    await emulator.waitFor(() => emulator.openTriggered().length === 0 || io.signal.aborted,
      { timeout: ROUND_TRIP_TIMEOUT_MS, what: 'every task to close' });
    closedAll = emulator.openTriggered().length === 0;
  } catch (error) {
    io.err(`demo: ${error instanceof Error ? error.message : String(error)}`);
  } finally {
    stop.abort();
    io.signal.removeEventListener('abort', onInterrupt);
    await agent.closed.catch((error: unknown) => io.err(`demo: the agent failed: ${error instanceof Error ? error.message : String(error)}`));
    await service.close();
    await emulator.close();
  }
  const count = (type: string): number => emulator.received({ type }).length;
  io.out('');
  io.out(`Summary: ${tasks} task(s) triggered; the service answered ${count(TASK_TYPE.replace('triggered', 'started'))} .started and `
    + `${count(TASK_TYPE.replace('triggered', 'finished'))} .finished through the agent; `
    + `${tasks - emulator.openTriggered().length} of ${tasks} closed in ${((Date.now() - started) / 1_000).toFixed(1)} s; `
    + `registered as ${emulator.registrations().map((integration) => integration.name).join(', ') || 'nothing'}.`);
  return closedAll ? 0 : 1;
}

/** A loopback port free right now: the service must know the agent's relay address before the agent starts. */
async function freeLoopbackPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', resolve);
  });
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
