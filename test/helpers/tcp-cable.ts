/**
 * A TCP pass-through on 127.0.0.1 between an agent and a server, that a test
 * can unplug: while unplugged, connections are cut and new ones refused.
 * It lets a test decide when the agent may reach a restarted server, e.g.
 * only after the test's own subscriber is back.
 */
import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export class TcpCable {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #plugged = true;

  private constructor(targetPort: number) {
    this.#server = createServer((client) => {
      if (!this.#plugged) {
        client.destroy();
        return;
      }
      const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
      for (const [socket, other] of [[client, upstream], [upstream, client]] as const) {
        this.#sockets.add(socket);
        socket.on('error', () => other.destroy());
        socket.on('close', () => {
          this.#sockets.delete(socket);
          other.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  static async start(targetPort: number): Promise<TcpCable> {
    const cable = new TcpCable(targetPort);
    cable.#server.listen(0, '127.0.0.1');
    await once(cable.#server, 'listening');
    return cable;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  /** Cuts every connection and refuses new ones until `plug()`. */
  unplug(): void {
    this.#plugged = false;
    for (const socket of this.#sockets) socket.destroy();
  }

  plug(): void {
    this.#plugged = true;
  }

  async close(): Promise<void> {
    this.unplug();
    const closed = once(this.#server, 'close');
    this.#server.close();
    await closed;
  }
}
