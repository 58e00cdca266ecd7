/**
 * A forward proxy on 127.0.0.1 for the egress tests: CONNECT tunnels, as a
 * corporate proxy offers them (the agent tunnels http and https targets
 * alike); any other request is answered 405.
 * It counts what it sees, can require Proxy-Authorization, and can be
 * stopped and started again on the same port (a proxy outage).
 */
import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';

export interface SeenRequest {
  readonly method: string;
  /** `host:port` for CONNECT. */
  readonly target: string;
  readonly proxyAuthorization: string | undefined;
}

export interface LoopbackProxy {
  readonly url: string;
  readonly port: number;
  readonly seen: SeenRequest[];
  /** Stops listening and cuts every connection; `start()` listens again on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startLoopbackProxy({ credentials }: { credentials?: string } = {}): Promise<LoopbackProxy> {
  const seen: SeenRequest[] = [];
  const sockets = new Set<Socket>();
  const expected = credentials === undefined ? undefined : `Basic ${Buffer.from(credentials).toString('base64')}`;
  let port = 0;
  let server: Server | undefined;

  const authorized = (req: IncomingMessage): boolean => expected === undefined || req.headers['proxy-authorization'] === expected;

  function refuse(req: IncomingMessage, res: ServerResponse): void {
    seen.push({ method: req.method ?? 'GET', target: req.url ?? '', proxyAuthorization: req.headers['proxy-authorization'] });
    res.writeHead(405, { allow: 'CONNECT' }).end();
  }

  function tunnel(req: IncomingMessage, client: Socket, head: Buffer): void {
    seen.push({ method: 'CONNECT', target: req.url ?? '', proxyAuthorization: req.headers['proxy-authorization'] });
    if (!authorized(req)) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n\r\n');
      return;
    }
    const [host = '', targetPort = ''] = (req.url ?? '').split(':');
    const upstream = net.connect(Number(targetPort), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
  }

  async function start(): Promise<void> {
    server = http.createServer(refuse);
    server.on('connect', tunnel);
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen(port, '127.0.0.1', () => resolve());
    });
    port = (server.address() as AddressInfo).port;
  }

  await start();
  return {
    get url() { return `http://127.0.0.1:${port}`; },
    get port() { return port; },
    seen,
    start,
    stop: async () => {
      const closing = server;
      server = undefined;
      if (closing === undefined) return;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => closing.close(() => resolve()));
    },
  };
}
