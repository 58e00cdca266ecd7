/**
 * A real `nats-server` (Debian package `nats-server`) on a free port of
 * 127.0.0.1, for the NATS-mode tests. `start()` resolves once it accepts
 * connections; `stop()` ends it; `restart()` brings it back on the same port
 * (an outage, as a test sees it). Also a plain client for the test's side:
 * publishing triggered events and watching what the agent publishes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection, createServer } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { until } from './until.ts';

export class NatsServer {
  #process: ChildProcess | undefined;
  #port = 0;
  #output = '';

  private constructor() {}

  static async start(): Promise<NatsServer> {
    const server = new NatsServer();
    server.#port = await freePort();
    await server.up();
    return server;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.#port}`;
  }

  /** Settings that point an agent here (NATS mode). */
  get env(): Record<string, string> {
    return { PUBSUB_URL: this.url };
  }

  /** Starts the server on its port and waits until it accepts connections. */
  async up(): Promise<void> {
    if (this.#process !== undefined) return;
    const child = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(this.#port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#process = child;
    child.stdout.on('data', (chunk: Buffer) => { this.#output += chunk.toString('utf8'); });
    child.stderr.on('data', (chunk: Buffer) => { this.#output += chunk.toString('utf8'); });
    let failed: Error | undefined;
    child.once('error', (error) => { failed = error; });
    child.once('exit', (code) => { failed ??= new Error(`nats-server exited with ${code}: ${this.#output}`); });
    await until(async () => {
      if (failed !== undefined) throw failed;
      return accepts(this.#port);
    }, { timeout: 10_000, what: `nats-server on port ${this.#port}` });
  }

  /** Stops the server (SIGTERM) and waits until it has exited: an outage. */
  async down(): Promise<void> {
    const child = this.#process;
    if (child === undefined) return;
    this.#process = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
  }

  async restart(): Promise<void> {
    await this.down();
    await this.up();
  }

  async close(): Promise<void> {
    await this.down();
  }

  /** A client of the test's own, closed by the caller. */
  client(): Promise<NatsConnection> {
    return connect({ servers: this.url, reconnectTimeWait: 50, maxReconnectAttempts: -1 });
  }
}

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

/** Whether a TCP connection to 127.0.0.1:port is accepted. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => { socket.destroy(); resolve(false); });
  });
}
