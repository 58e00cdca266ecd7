/**
 * The practical limit for relay latency on this machine: a relay process that
 * does the least one can — take the body, answer 202, POST it on to the
 * control plane over a keep-alive `node:http` connection. No validation, no
 * outbox, no order per context, no retries. It costs the same two loopback
 * hops and the same process wake-ups as the agent, which posting straight to
 * the control plane (in the bench's own process) does not.
 *
 *     node --import tsx bench/bare-relay.ts <port> <eventUrl>
 */
import { Agent, createServer, request } from 'node:http';

const [port, eventUrl] = process.argv.slice(2) as [string, string];
const target = new URL(eventUrl);
const agent = new Agent({ keepAlive: true });

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    res.writeHead(202).end();
    const forward = request(target, { method: 'POST', agent, headers: { 'content-type': 'application/cloudevents+json' } }, (answer) => answer.resume());
    forward.on('error', (error) => { process.stderr.write(`bare relay: ${error.message}\n`); });
    forward.end(Buffer.concat(chunks));
  });
});
server.listen(Number(port), '127.0.0.1', () => { process.stdout.write('listening\n'); });
process.on('SIGTERM', () => { server.close(); agent.destroy(); });
