/**
 * The dedup record across restarts (STATE_DIR), and what a shutdown leaves
 * behind: the real agent, stopped and started again, against the emulated
 * control plane and a real recipient.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { DEDUP_FILE } from '../../lib/dedup/file.ts';
import { startEmulator, type Emulator, type TriggeredEvent } from '../../lib/emulator/server.ts';
import { Recipient } from '../helpers/recipient.ts';
import { startTestAgent, type RunningAgent } from '../helpers/start-agent.ts';

const TOKEN = 'e2e-state-token';
const TOPIC = 'sh.keptn.event.test.triggered';

describe('e2e: dedup record across restarts', () => {
  let emulator: Emulator;
  let recipient: Recipient;
  let stateDir: string;
  const agents: RunningAgent[] = [];

  beforeEach(async () => {
    emulator = await startEmulator({ port: 0, token: TOKEN });
    recipient = await Recipient.start();
    stateDir = await mkdtemp(join(tmpdir(), 'agent-state-'));
  });
  afterEach(async () => {
    recipient.release();
    for (const agent of agents.splice(0)) await agent.stop();
    await emulator.close();
    await recipient.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string> = {}): Promise<RunningAgent> {
    const agent = await startTestAgent({
      KEPTN_API_ENDPOINT: `${emulator.url}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: TOPIC, ...recipient.env, ...env,
    });
    agents.push(agent);
    return agent;
  }

  async function stop(agent: RunningAgent): Promise<void> {
    await agent.stop();
    agents.splice(agents.indexOf(agent), 1);
  }

  async function polls(cycles: number): Promise<void> {
    const target = emulator.requests.poll + cycles;
    await emulator.waitFor(() => emulator.requests.poll >= target, { what: `${cycles} more polls` });
  }

  function trigger(): TriggeredEvent {
    return emulator.trigger({ type: TOPIC, project: 'sockshop', stage: 'dev', service: 'carts' });
  }

  function counts(): Record<string, number> {
    const result: Record<string, number> = {};
    for (const id of recipient.ids()) result[id] = (result[id] ?? 0) + 1;
    return result;
  }

  it('restart with STATE_DIR: nothing handed over is dispatched again; new events are', async () => {
    const first = await start({ STATE_DIR: stateDir });
    const before = [trigger(), trigger()];
    await recipient.received(2);
    await stop(first);

    await start({ STATE_DIR: stateDir });
    await polls(5);
    const after = trigger();
    await recipient.received(3);
    await polls(5);
    expect(counts()).to.deep.equal(Object.fromEntries([...before, after].map((event) => [event.id, 1])));
  });

  it('restart without STATE_DIR (memory): the open events are dispatched again — what STATE_DIR is for', async () => {
    const first = await start();
    const event = trigger();
    await recipient.received(1);
    await stop(first);
    await start();
    await recipient.received(2);
    expect(counts()).to.deep.equal({ [event.id]: 2 });
  });

  it('shutdown with a hanging recipient: bounded by the deadline; the sent event is kept, the queued ones are not', async () => {
    recipient.hang();
    const first = await start({ STATE_DIR: stateDir, MAX_CONCURRENT_DISPATCHES: '1', SHUTDOWN_TIMEOUT: '200ms', DISPATCH_TIMEOUT: '30s' });
    const events = [trigger(), trigger(), trigger()];
    await recipient.received(1);
    const sent = recipient.ids()[0];
    await stop(first);
    const { values } = await first.metrics.eventsDispatched.get();
    const outcomes = Object.fromEntries(values.map((value) => [value.labels.outcome, value.value]));
    expect(outcomes).to.deep.equal({ timeout: 1, cancelled: 2 });
    expect(await readFile(join(stateDir, DEDUP_FILE), 'utf8')).to.include(JSON.stringify(['+', TOPIC, sent]));

    recipient.release();
    await start({ STATE_DIR: stateDir });
    await recipient.received(3);
    await polls(5);
    expect(counts()).to.deep.equal(Object.fromEntries(events.map((event) => [event.id, 1])));
  });

  it('a corrupt dedup file: the agent starts anyway, with a warning, from an empty record', async () => {
    await writeFile(join(stateDir, DEDUP_FILE), '{"not": "a dedup log"');
    const event = trigger();
    const agent = await start({ STATE_DIR: stateDir });
    await recipient.received(1);
    expect(recipient.ids()).to.deep.equal([event.id]);
    const warnings = agent.logs.entries().filter((entry) => entry.level === 'warn' && entry.component === 'dedup');
    expect(warnings.map((entry) => entry.message)).to.deep.equal(['the dedup record is corrupt: starting empty, open events may be dispatched again']);
  });

  it('an unusable STATE_DIR stops the start with an error naming it', async () => {
    // (Which part reports it first depends on the start order: the outbox uses STATE_DIR too.)
    const blocker = join(stateDir, 'file');
    await writeFile(blocker, 'x');
    try {
      await start({ STATE_DIR: blocker });
      expect.fail('the agent should not start');
    } catch (error) {
      expect((error as Error).message).to.include(blocker);
    }
    expect(recipient.requests).to.have.length(0);
  });
});
