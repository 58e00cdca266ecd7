/** A recipient that answers 200 at once and counts distinct event ids and duplicates. */
import { createServer } from 'node:http';

export interface CountingRecipient {
  readonly url: string;
  /** Distinct ids received. */
  readonly distinct: number;
  /** Deliveries of an id already received. */
  readonly duplicates: number;
  /** Resolves when `count` distinct ids have arrived, with the time of the last one. */
  received(count: number): Promise<number>;
  close(): Promise<void>;
}

export async function startCountingRecipient(): Promise<CountingRecipient> {
  const ids = new Set<string>();
  let duplicates = 0;
  let waiting: { count: number; resolve: (at: number) => void } | undefined;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const id = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id: string }).id;
      if (ids.has(id)) duplicates += 1;
      else ids.add(id);
      response.writeHead(200).end();
      if (waiting && ids.size >= waiting.count) {
        waiting.resolve(performance.now());
        waiting = undefined;
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    get distinct() { return ids.size; },
    get duplicates() { return duplicates; },
    received: (count) => new Promise((resolve) => {
      if (ids.size >= count) resolve(performance.now());
      else waiting = { count, resolve };
    }),
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
