/**
 * The practical limit for dispatch on this machine: what the agent does, and
 * nothing else, with plain `node:http` — fetch every page of open events,
 * then POST each one to the recipient with the same concurrency. No dedup,
 * no validation, no logging, no retries.
 *
 *     node --import tsx bench/bare-dispatch.ts <pollUrl> <recipientUrl> <pageSize> <concurrency>
 */
import { Agent, request } from 'node:http';

const [pollUrl, recipientUrl, pageSize, concurrency] = process.argv.slice(2) as [string, string, string, string];
const agent = new Agent({ keepAlive: true });

function call(url: URL, method: string, body?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers: body ? { 'content-type': 'application/cloudevents+json' } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const events: unknown[] = [];
let nextPageKey: string | undefined;
do {
  const url = new URL(pollUrl);
  url.searchParams.set('pageSize', pageSize);
  if (nextPageKey) url.searchParams.set('nextPageKey', nextPageKey);
  const page = JSON.parse(await call(url, 'GET')) as { events: unknown[]; nextPageKey?: string };
  events.push(...page.events);
  nextPageKey = page.nextPageKey && page.nextPageKey !== '0' ? page.nextPageKey : undefined;
} while (nextPageKey);

const recipient = new URL(recipientUrl);
let next = 0;
async function worker(): Promise<void> {
  while (next < events.length) {
    const event = events[next++];
    await call(recipient, 'POST', JSON.stringify(event));
  }
}
await Promise.all(Array.from({ length: Number(concurrency) }, worker));
agent.destroy();
