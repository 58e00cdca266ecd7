/**
 * A minimal Keptn-service, the kind the agent dispatches to. Copy it as the
 * start of your own: it takes a `.triggered` CloudEvent, answers at once, and
 * reports the task back through the agent's local relay — first `.started`,
 * then, when the work is done, `.finished` with a status and a result.
 *
 * It uses only Node's `http` module and the global `fetch`, so it runs as is.
 */
import { createServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';

export interface ExampleServiceOptions {
  /** The agent's relay, e.g. http://127.0.0.1:8081/event. */
  readonly relayUrl: string;
  readonly port?: number;
  readonly host?: string;
  /** The task's work; the default just says hello. */
  readonly work?: (event: TriggeredEvent) => Promise<string>;
  readonly log?: (line: string) => void;
}

export interface TriggeredEvent {
  readonly id: string;
  readonly type: string;
  readonly shkeptncontext: string;
  readonly data: { readonly project?: string; readonly stage?: string; readonly service?: string };
}

export interface ExampleService {
  readonly url: string;
  close(): Promise<void>;
}

export async function startExampleService(options: ExampleServiceOptions): Promise<ExampleService> {
  const log = options.log ?? (() => undefined);
  const work = options.work ?? (async (event) => `hello from the example service, ${event.data.service ?? 'service'}!`);

  const server: Server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => { body += chunk; });
    request.on('end', () => {
      let event: TriggeredEvent;
      try {
        event = JSON.parse(body) as TriggeredEvent;
      } catch {
        response.writeHead(400, { 'content-type': 'application/json' }).end('{"message":"not JSON"}');
        return;
      }
      // Answer the dispatch at once; the task runs afterwards and reports through the relay.
      response.writeHead(202).end();
      log(`example service ← ${event.type} ${event.id}`);
      handle(event).catch((error: unknown) => log(`example service: ${error instanceof Error ? error.message : String(error)}`));
    });
  });

  async function handle(triggered: TriggeredEvent): Promise<void> {
    await send(triggered, 'started', { status: 'succeeded' });
    const message = await work(triggered).then(
      (text) => ({ status: 'succeeded', result: 'pass', message: text }),
      (error: unknown) => ({ status: 'errored', result: 'fail', message: error instanceof Error ? error.message : String(error) }),
    );
    await send(triggered, 'finished', message);
  }

  /** Posts `sh.keptn.event.<task>.<kind>` answering `triggered` to the agent's relay. */
  async function send(triggered: TriggeredEvent, kind: 'started' | 'finished', outcome: Record<string, string>): Promise<void> {
    const { project, stage, service } = triggered.data;
    const type = triggered.type.replace(/\.triggered$/, `.${kind}`);
    const response = await fetch(options.relayUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({
        specversion: '1.0',
        id: randomUUID(),
        source: 'example-service',
        type,
        time: new Date().toISOString(),
        shkeptncontext: triggered.shkeptncontext,
        triggeredid: triggered.id,
        data: { project, stage, service, ...outcome },
      }),
    });
    if (!response.ok) throw new Error(`the relay answered ${response.status} to ${type}: ${await response.text()}`);
    log(`example service → ${type}`);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 8080, options.host ?? '127.0.0.1', resolve);
  });
  const { port } = server.address() as { port: number };
  return {
    url: `http://${options.host ?? '127.0.0.1'}:${port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
