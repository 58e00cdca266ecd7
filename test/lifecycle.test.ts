import { expect } from 'chai';
import { runParts, type Part } from '../lib/lifecycle.ts';
import { silentLogger } from '../lib/log.ts';

function recordingPart(name: string, journal: string[], options: { failStart?: boolean; stopUntilDeadline?: boolean } = {}): Part {
  return {
    name,
    start: async () => {
      journal.push(`start ${name}`);
      if (options.failStart) throw new Error(`${name} cannot start`);
    },
    stop: async (deadline) => {
      journal.push(`stop ${name}`);
      if (options.stopUntilDeadline) {
        if (!deadline.aborted) await new Promise<void>((resolve) => deadline.addEventListener('abort', () => resolve(), { once: true }));
        journal.push(`deadline ${name}`);
      }
    },
  };
}

describe('lifecycle', () => {
  it('starts parts in order and stops them in reverse order once the signal aborts', async () => {
    const journal: string[] = [];
    const controller = new AbortController();
    const run = runParts([recordingPart('health', journal), recordingPart('server', journal), recordingPart('poller', journal)],
      { signal: controller.signal, shutdownTimeoutMs: 1_000, logger: silentLogger() });
    await run.ready;
    expect(journal).to.deep.equal(['start health', 'start server', 'start poller']);
    controller.abort();
    await run.closed;
    expect(journal.slice(3)).to.deep.equal(['stop poller', 'stop server', 'stop health']);
  });

  it('a part that cannot start rejects ready and closed, and the parts already started are stopped', async () => {
    const journal: string[] = [];
    const run = runParts([recordingPart('health', journal), recordingPart('server', journal, { failStart: true }), recordingPart('poller', journal)],
      { signal: new AbortController().signal, shutdownTimeoutMs: 1_000, logger: silentLogger() });
    let readyError: unknown;
    await run.ready.catch((error: unknown) => { readyError = error; });
    let closedError: unknown;
    await run.closed.catch((error: unknown) => { closedError = error; });
    expect((readyError as Error).message).to.equal('server cannot start');
    expect(closedError).to.equal(readyError);
    expect(journal).to.deep.equal(['start health', 'start server', 'stop server', 'stop health']);
  });

  it('gives every part the same shutdown deadline', async () => {
    const journal: string[] = [];
    const controller = new AbortController();
    const run = runParts([recordingPart('a', journal, { stopUntilDeadline: true }), recordingPart('b', journal, { stopUntilDeadline: true })],
      { signal: controller.signal, shutdownTimeoutMs: 20, logger: silentLogger() });
    await run.ready;
    controller.abort();
    await run.closed;
    expect(journal.slice(2)).to.deep.equal(['stop b', 'deadline b', 'stop a', 'deadline a']);
  });

  it('an already aborted signal starts nothing', async () => {
    const journal: string[] = [];
    const run = runParts([recordingPart('a', journal)], { signal: AbortSignal.abort(), shutdownTimeoutMs: 10, logger: silentLogger() });
    await run.ready;
    await run.closed;
    expect(journal).to.deep.equal([]);
  });
});
