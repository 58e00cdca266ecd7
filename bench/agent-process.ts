/**
 * The real agent as a separate process (`node bin/keptn-distributor.js`), so
 * its memory and CPU are its own. Ready when it logs its "ready" line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

export interface AgentProcess {
  readonly pid: number;
  readonly relayUrl: string;
  /** SIGTERM, then wait for the exit code. */
  stop(): Promise<number | null>;
}

const BIN = new URL('../bin/keptn-distributor.js', import.meta.url).pathname;

export async function startAgentProcess(env: Record<string, string>, { relayPort, nodeArgs = [] }: { relayPort: number; nodeArgs?: readonly string[] }): Promise<AgentProcess> {
  // For profiling the agent alone: BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof' (node refuses these in NODE_OPTIONS).
  const extraArgs = (process.env.BENCH_AGENT_NODE_ARGS ?? '').split(/\s+/).filter((arg) => arg !== '');
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, ...extraArgs, BIN], {
    env: {
      PATH: process.env.PATH ?? '',
      LOG_LEVEL: 'warn', DISABLE_REGISTRATION: 'true', HEALTH_ENDPOINT_PORT: '0', API_PROXY_PORT: String(relayPort), ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  // LOG_LEVEL=warn hides the "ready" line, so readiness is the relay port answering.
  await waitForPort(relayPort, exited);
  lines.on('line', (line) => process.stderr.write(`agent: ${line}\n`));
  return {
    pid: child.pid!,
    relayUrl: `http://127.0.0.1:${relayPort}`,
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

async function waitForPort(port: number, exited: Promise<number | null>): Promise<void> {
  const deadline = Date.now() + 10_000;
  let gone = false;
  void exited.then(() => { gone = true; });
  while (Date.now() < deadline) {
    if (gone) throw new Error('the agent exited before it was ready');
    try {
      await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(500) });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  throw new Error('the agent did not listen within 10 s');
}
