import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { demo } from '../../lib/demo/demo.ts';

describe('demo', () => {
  it('runs triggered → started → finished for every task through the real agent, and ends with a summary', async () => {
    const out: string[] = [];
    const err: string[] = [];
    let agentLog = '';
    const stream = new PassThrough();
    stream.on('data', (chunk: Buffer) => { agentLog += chunk.toString(); });
    const code = await demo({ tasks: 2 }, {
      signal: new AbortController().signal,
      out: (line) => out.push(line),
      err: (line) => err.push(line),
      agentLog: stream,
      setExitCode: () => undefined,
    });
    expect(err, agentLog).to.deep.equal([]);
    expect(code).to.equal(0);
    const text = out.join('\n');
    expect(text).to.match(/← sh\.keptn\.event\.hello\.started .*→ started/);
    expect(text).to.match(/← sh\.keptn\.event\.hello\.finished .*→ closed triggered/);
    expect(out.at(-1)).to.match(/^Summary: 2 task\(s\) triggered; the service answered 2 \.started and 2 \.finished through the agent; 2 of 2 closed in [\d.]+ s; registered as example-service\.$/);
  });

  it('an interrupted demo stops the agent, closes everything and still reports', async () => {
    const controller = new AbortController();
    const out: string[] = [];
    const running = demo({ tasks: 1 }, {
      signal: controller.signal,
      out: (line) => {
        out.push(line);
        if (line.includes('agent polls')) controller.abort();
      },
      err: () => undefined,
      agentLog: new PassThrough(),
      setExitCode: () => undefined,
    });
    await running;
    expect(out.at(-1)).to.match(/^Summary: 1 task\(s\) triggered/);
  });
});
