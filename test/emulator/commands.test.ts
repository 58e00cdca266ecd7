import { expect } from 'chai';
import { Command, CommanderError } from 'commander';
import { addEmulatorCommands, emulate, trigger, type CommandIo } from '../../lib/emulator/commands.ts';
import { call, fixturePath, useEmulators } from './harness.ts';

interface Recorded extends CommandIo {
  readonly lines: string[];
  readonly errors: string[];
  /** Resolves with the first line written to standard output. */
  readonly firstLine: Promise<string>;
  readonly stop: () => void;
}

function recordingIo(): Recorded {
  const controller = new AbortController();
  const lines: string[] = [];
  const errors: string[] = [];
  let resolveFirst: (line: string) => void = () => undefined;
  const firstLine = new Promise<string>((resolve) => { resolveFirst = resolve; });
  return {
    lines, errors, firstLine,
    signal: controller.signal,
    stop: () => controller.abort(),
    out: (line) => {
      lines.push(line);
      if (lines.length === 1) resolveFirst(line);
    },
    err: (line) => errors.push(line),
  };
}

const TASK = { type: 'sh.keptn.event.deployment.triggered', project: 'sockshop', stage: 'dev', service: 'carts' };

describe('emulator commands: trigger', () => {
  const start = useEmulators();

  it('starts a task in a running emulator and prints its id and Keptn context', async () => {
    const emulator = await start();
    const io = recordingIo();
    const code = await trigger({ ...TASK, emulator: emulator.url }, io);
    expect(code).to.equal(0);
    expect(io.errors).to.deep.equal([]);
    const [opened] = emulator.openTriggered();
    expect(io.lines).to.deep.equal([`triggered sh.keptn.event.deployment.triggered  id ${opened?.id}  keptn context ${opened?.shkeptncontext}`]);
  });

  it('merges the --data file into the event\'s data', async () => {
    const emulator = await start();
    expect(await trigger({ ...TASK, emulator: `${emulator.url}/`, data: fixturePath('trigger-data.json') }, recordingIo())).to.equal(0);
    expect(emulator.openTriggered()[0]?.data).to.deep.equal({
      deployment: { deploymentstrategy: 'direct' }, labels: { buildId: '42' }, project: 'sockshop', service: 'carts', stage: 'dev',
    });
  });

  it('sends --token as x-token', async () => {
    const emulator = await start({ token: 'secret' });
    expect(await trigger({ ...TASK, emulator: emulator.url, token: 'secret' }, recordingIo())).to.equal(0);
  });

  const usageErrors: Array<[string, Partial<Parameters<typeof trigger>[0]>, RegExp]> = [
    ['a type not ending in .triggered', { type: 'sh.keptn.event.deployment.started' }, /--type "sh\.keptn\.event\.deployment\.started": expected an event type ending in \.triggered/],
    ['a data file that does not exist', { data: fixturePath('missing.json') }, /--data .*missing\.json: cannot read it: ENOENT/],
    ['a data file that is not JSON', { data: fixturePath('not-json.txt') }, /--data .*not-json\.txt: is not valid JSON/],
    ['a data file that holds no object', { data: fixturePath('array.json') }, /--data .*array\.json: must hold a JSON object/],
    ['an emulator URL that is no URL', { emulator: 'localhost:8090' }, /--emulator "localhost:8090": expected an http\(s\) URL/],
  ];
  for (const [what, options, message] of usageErrors) {
    it(`prints one line and returns 2 for ${what}`, async () => {
      const emulator = await start();
      const io = recordingIo();
      expect(await trigger({ ...TASK, emulator: emulator.url, ...options }, io)).to.equal(2);
      expect(io.errors).to.have.length(1);
      expect(io.errors[0]).to.match(/^keptn-distributor trigger: /).and.to.match(message);
      expect(io.lines).to.deep.equal([]);
      expect(emulator.openTriggered()).to.deep.equal([]);
    });
  }

  it('prints one line and returns 1 when the emulator is unreachable', async () => {
    const emulator = await start();
    const url = emulator.url;
    await emulator.close();
    const io = recordingIo();
    expect(await trigger({ ...TASK, emulator: url }, io)).to.equal(1);
    expect(io.errors).to.have.length(1);
    expect(io.errors[0]).to.include(`cannot reach the emulator at ${url}/: connect ECONNREFUSED`);
  });

  it('returns 1 with the emulator\'s message when it fails', async () => {
    const emulator = await start();
    emulator.faults.fail('trigger', { status: 503 });
    const io = recordingIo();
    expect(await trigger({ ...TASK, emulator: emulator.url }, io)).to.equal(1);
    expect(io.errors).to.deep.equal(['keptn-distributor trigger: the emulator answered 503: fault injected by the keptn-distributor emulator']);
  });
});

describe('emulator commands: emulate', () => {
  const start = useEmulators();

  it('prints where it listens and how to point an agent at it, serves until the signal, then returns 0', async () => {
    const io = recordingIo();
    const running = emulate({ port: 0, host: '127.0.0.1', token: 'secret' }, io);
    const line = await io.firstLine;
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+);/.exec(line)?.[1];
    expect(url, line).to.be.a('string');
    expect(line).to.include(`KEPTN_API_ENDPOINT=${url} KEPTN_API_TOKEN=secret PUBSUB_TOPIC=sh.keptn.event.test.triggered`);

    expect(await trigger({ ...TASK, emulator: url ?? '' }, recordingIo())).to.equal(0);
    const poll = await call<{ events: unknown[] }>(`${url}/controlPlane/v1/event/triggered/${TASK.type}`, { headers: { 'x-token': 'secret' } });
    expect(poll.body.events).to.have.length(1);
    expect(io.lines.slice(1).join('\n')).to.match(/→ open +sh\.keptn\.event\.deployment\.triggered/);

    io.stop();
    expect(await running).to.equal(0);
    expect(io.errors).to.deep.equal([]);
  });

  it('--api-version 1.x serves the 1.x uniform: registration with subscriptions, ping, and says so', async () => {
    const io = recordingIo();
    const running = emulate({ port: 0, apiVersion: '1.x' }, io);
    const line = await io.firstLine;
    expect(line).to.include('(Keptn 1.x: subscriptions under …/uniform/registration/<id>/subscription)');
    const url = /listening on (http:\/\/127\.0\.0\.1:\d+);/.exec(line)?.[1] ?? '';
    const registered = await call(`${url}/controlPlane/v1/uniform/registration`, {
      json: { name: 'svc', metadata: { hostname: 'n', kubernetesmetadata: { namespace: 'ns' } }, subscriptions: [{ event: TASK.type }] },
    });
    expect(registered.status).to.equal(201);
    const ping = await call(`${url}/controlPlane/v1/uniform/registration/${String(registered.body.id)}/ping`, { method: 'PUT' });
    expect(ping.status).to.equal(200);
    expect(io.lines.slice(1).join('\n')).to.match(/⇄ registered svc \(namespace ns\) {2}id \S+ {2}topics sh\.keptn\.event\.deployment\.triggered/);
    io.stop();
    expect(await running).to.equal(0);
  });

  it('quotes a token the shell would split', async () => {
    const io = recordingIo();
    const running = emulate({ port: 0, token: "it's secret" }, io);
    expect(await io.firstLine).to.include(`KEPTN_API_TOKEN='it'\\''s secret'`);
    io.stop();
    await running;
  });

  it('prints one line and returns 1 when the port is in use', async () => {
    const taken = await start();
    const io = recordingIo();
    expect(await emulate({ port: taken.port }, io)).to.equal(1);
    expect(io.errors).to.have.length(1);
    expect(io.errors[0]).to.match(new RegExp(`^keptn-distributor emulate: cannot listen on 127\\.0\\.0\\.1:${taken.port}: .*EADDRINUSE`));
  });
});

describe('emulator commands: wiring into commander', () => {
  function program(io: CommandIo, codes: number[]): Command {
    const root = new Command('keptn-distributor').exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
    addEmulatorCommands(root, { ...io, setExitCode: (code) => codes.push(code) });
    return root;
  }

  for (const port of ['70000', '-1', '80.5', 'http', '']) {
    it(`refuses --port ${JSON.stringify(port)} as a usage error`, async () => {
      const error = await program(recordingIo(), []).parseAsync(['emulate', '--port', port], { from: 'user' }).then(() => undefined, (thrown: unknown) => thrown);
      expect(error).to.be.instanceOf(CommanderError);
      expect((error as CommanderError).code).to.equal('commander.invalidArgument');
    });
  }

  it('runs emulate with the parsed options and reports its exit code', async () => {
    const io = recordingIo();
    io.stop();
    const codes: number[] = [];
    await program(io, codes).parseAsync(['emulate', '--port', '0', '--pagination-bug', '--api-version', '1.x'], { from: 'user' });
    expect(codes).to.deep.equal([0]);
    expect(io.lines[0]).to.match(/listening on http:\/\/127\.0\.0\.1:\d+.*Keptn 1\.x/);
  });

  it('refuses an unknown --api-version as a usage error', async () => {
    const error = await program(recordingIo(), []).parseAsync(['emulate', '--api-version', '2'], { from: 'user' }).then(() => undefined, (thrown: unknown) => thrown);
    expect((error as CommanderError).code).to.equal('commander.invalidArgument');
  });

  it('requires --type, --project, --stage and --service for trigger', async () => {
    const error = await program(recordingIo(), []).parseAsync(['trigger', '--type', TASK.type], { from: 'user' }).then(() => undefined, (thrown: unknown) => thrown);
    expect((error as CommanderError).code).to.equal('commander.missingMandatoryOptionValue');
  });
});
