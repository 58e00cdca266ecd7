import http, { type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { KeptnCredentials } from '../lib/credentials.ts';
import { EgressAgents } from '../lib/egress-proxy.ts';
import { ApiProxy, escapeResourceUri, goQueryEscape, mapInClusterPath, mapProxyPath } from '../lib/proxy.ts';
import { sendError } from '../lib/server.ts';
import { logSink } from './helpers/log-sink.ts';

const ENDPOINT = new URL('https://keptn.example.com/api');

function target(path: string, endpoint = ENDPOINT): string {
  const mapping = mapProxyPath(path, endpoint);
  if (!mapping.ok) throw new Error(`${mapping.status}: ${mapping.message}`);
  return `${mapping.protocol}//${mapping.host}${mapping.path}`;
}

describe('proxy', () => {
  describe('Test_getProxyRequestURL (reference §14.1, HTTP-mode cases)', () => {
    const cases: Array<{ name: string; endpoint: string; path: string; scheme: string; host: string; want: string }> = [
      { name: 'Get configuration service via public API', endpoint: 'http://external-api.com/api', path: '/configuration-service', scheme: 'http:', host: 'external-api.com', want: '/api/configuration-service/' },
      {
        name: 'Get configuration service via public API with API prefix', endpoint: 'http://external-api.com/my/path/prefix/api', path: '/configuration-service',
        scheme: 'http:', host: 'external-api.com', want: '/my/path/prefix/api/configuration-service/',
      },
    ];
    for (const c of cases) {
      it(c.name, () => {
        expect(mapProxyPath(c.path, new URL(c.endpoint))).to.deep.equal({ ok: true, protocol: c.scheme, host: c.host, path: c.want });
      });
    }
  });

  describe('mapping (spec §7.3.2 examples, HTTP mode)', () => {
    const cases: Array<[string, string]> = [
      ['/controlPlane/v1/project/sockshop', 'https://keptn.example.com/api/controlPlane/v1/project/sockshop'],
      ['/mongodb-datastore/event/type/sh.keptn.event.evaluation.finished', 'https://keptn.example.com/api/mongodb-datastore/event/type/sh.keptn.event.evaluation.finished'],
      ['/configuration-service', 'https://keptn.example.com/api/configuration-service/'],
      ['/configuration-service/v1/project/p/stage/s/service/c/resource/helm%2Fvalues.yaml', 'https://keptn.example.com/api/configuration-service/v1/project/p/stage/s/service/c/resource/helm%252Fvalues.yaml'],
      ['/controlPlane', 'https://keptn.example.com/api/controlPlane/'],
    ];
    for (const [path, want] of cases) it(`${path} → ${want}`, () => expect(target(path)).to.equal(want));

    it('an endpoint without a path, and one with a port and a trailing slash', () => {
      expect(target('/controlPlane/v1/x', new URL('http://127.0.0.1:8080'))).to.equal('http://127.0.0.1:8080/controlPlane/v1/x');
      expect(target('/controlPlane/v1/x', new URL('http://keptn:81/api/'))).to.equal('http://keptn:81/api/controlPlane/v1/x');
    });

    it('an unescaped nested resource URI is escaped once, as the reference does', () => {
      expect(target('/configuration-service/v1/project/p/resource/helm/values.yaml'))
        .to.equal('https://keptn.example.com/api/configuration-service/v1/project/p/resource/helm%2Fvalues.yaml');
    });

    it('the /resource/ escaping applies to the configuration-service only', () => {
      expect(target('/mongodb-datastore/resource/a%2Fb')).to.equal('https://keptn.example.com/api/mongodb-datastore/resource/a%2Fb');
    });

    it('D14 fixed: with /resource/ twice, everything before the last one is kept', () => {
      expect(target('/configuration-service/v1/project/resource/stage/dev/service/resource/resource/helm%2Fvalues.yaml'))
        .to.equal('https://keptn.example.com/api/configuration-service/v1/project/resource/stage/dev/service/resource/resource/helm%252Fvalues.yaml');
    });

    it('goQueryEscape behaves like Go url.QueryEscape', () => {
      expect(goQueryEscape('helm/values.yaml')).to.equal('helm%2Fvalues.yaml');
      expect(goQueryEscape('a b+c%2F~-_.')).to.equal('a+b%2Bc%252F~-_.');
      expect(goQueryEscape("!'()*:@$&,;=?#[]")).to.equal('%21%27%28%29%2A%3A%40%24%26%2C%3B%3D%3F%23%5B%5D');
      expect(goQueryEscape('ü')).to.equal('%C3%BC');
      expect(escapeResourceUri('/x/resource/')).to.equal('/x/resource/');
      expect(escapeResourceUri('/x/resources/a/b')).to.equal('/x/resources/a/b');
    });
  });

  describe('mapping (spec §7.3.2 examples, NATS mode: the in-cluster services)', () => {
    const inCluster = (path: string): string => {
      const mapping = mapInClusterPath(path);
      return mapping.ok ? `${mapping.protocol}//${mapping.host}${mapping.path}` : `${mapping.status}`;
    };
    const cases: Array<[string, string]> = [
      ['/controlPlane/v1/project/sockshop', 'http://shipyard-controller:8080/v1/project/sockshop'],
      ['/mongodb-datastore/event/type/sh.keptn.event.evaluation.finished', 'http://mongodb-datastore:8080/event/type/sh.keptn.event.evaluation.finished'],
      ['/configuration-service', 'http://configuration-service:8080/'],
      // No gateway decodes in between: the resource URI goes as it came.
      ['/configuration-service/v1/project/p/stage/s/service/c/resource/helm%2Fvalues.yaml', 'http://configuration-service:8080/v1/project/p/stage/s/service/c/resource/helm%2Fvalues.yaml'],
      ['/v1/metadata', '404'],
      ['/controlPlaneX/v1/project', '404'],
      ['/controlPlane/v1/..%2F..%2Fsecret', '400'],
    ];
    for (const [path, want] of cases) it(`${path} → ${want}`, () => expect(inCluster(path)).to.equal(want));
  });

  describe('refused paths', () => {
    const notFound = ['/', '/v1/metadata', '/controlPlaneX/v1/project', '/controlplane/v1/project', '/mongodb-datastoreX', '/event/x'];
    for (const path of notFound) {
      it(`${path} → 404 (D15: no plain string prefix, no 500)`, () => {
        expect(mapProxyPath(path, ENDPOINT)).to.deep.include({ ok: false, status: 404 });
      });
    }
    const climbing = [
      '/controlPlane/../v1/metadata', '/controlPlane/v1/..', '/configuration-service/%2e%2e/secret', '/configuration-service/%2E%2E/secret',
      '/mongodb-datastore/.%2e/x', '/mongodb-datastore/%252e%252e/x', '/configuration-service/v1/project/p/resource/..%2F..%2Fsecret',
      '/controlPlane/a%5c..%5cb',
    ];
    for (const path of climbing) {
      it(`${path} → 400`, () => {
        expect(mapProxyPath(path, ENDPOINT)).to.deep.include({ ok: false, status: 400 });
      });
    }
    it('a segment that merely contains dots is fine', () => {
      expect(mapProxyPath('/controlPlane/v1/a..b/.well-known/x.y', ENDPOINT).ok).to.equal(true);
    });
  });

  describe('forwarding (a real upstream on 127.0.0.1)', () => {
    interface Seen { method: string; url: string; headers: IncomingMessage['headers']; rawHeaders: string[]; body: string }
    let upstream: Server;
    let upstreamUrl: URL;
    let local: Server;
    let localUrl: string;
    let seen: Seen[];
    let answer: (req: IncomingMessage, res: ServerResponse, body: string) => void;
    let proxy: ApiProxy;
    const logs = logSink();

    async function listen(server: Server): Promise<number> {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return (server.address() as AddressInfo).port;
    }

    async function start(token = 'secret-token', timeoutMs = 2_000, maxBodyBytes = 1024 * 1024): Promise<void> {
      proxy = new ApiProxy({
        endpoint: upstreamUrl, credentials: new KeptnCredentials(token), agents: new EgressAgents({ httpsProxy: undefined, httpProxy: undefined, proxyBypass: [] }),
        timeoutMs, maxBodyBytes, logger: logs.logger,
      });
      local = http.createServer((req, res) => {
        const url = req.url ?? '/';
        const at = url.indexOf('?');
        proxy.forward(req, res, at < 0 ? url : url.slice(0, at), at < 0 ? '' : url.slice(at), sendError);
      });
      localUrl = `http://127.0.0.1:${await listen(local)}`;
    }

    beforeEach(async () => {
      seen = [];
      answer = (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"ok":true}'); };
      upstream = http.createServer((req, res) => {
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (chunk: string) => { body += chunk; });
        req.on('end', () => {
          seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, body });
          answer(req, res, body);
        });
      });
      upstreamUrl = new URL(`http://127.0.0.1:${await listen(upstream)}/api`);
    });

    afterEach(async () => {
      proxy?.close();
      local?.closeAllConnections();
      upstream.closeAllConnections();
      await Promise.all([local, upstream].filter(Boolean).map((server) => new Promise((resolve) => server.close(resolve))));
    });

    it('GET with a query: path mapped, query kept, x-token set, status, headers and body passed back', async () => {
      await start();
      answer = (_req, res) => {
        res.writeHead(203, { 'content-type': 'application/json', 'x-custom': 'yes' });
        res.end('{"events":[]}');
      };
      const response = await fetch(`${localUrl}/mongodb-datastore/event?keptnContext=abc&pageSize=1`, { headers: { accept: 'application/json' } });
      expect(response.status).to.equal(203);
      expect(response.headers.get('x-custom')).to.equal('yes');
      expect(await response.text()).to.equal('{"events":[]}');
      expect(seen).to.have.length(1);
      expect(seen[0]!.url).to.equal('/api/mongodb-datastore/event?keptnContext=abc&pageSize=1');
      expect(seen[0]!.headers['x-token']).to.equal('secret-token');
      expect(seen[0]!.headers.accept).to.equal('application/json');
      expect(seen[0]!.headers.host).to.equal(upstreamUrl.host);
    });

    it('POST with a body: method and body passed through', async () => {
      await start();
      answer = (_req, res, body) => { res.writeHead(201); res.end(`got ${body.length}`); };
      const body = JSON.stringify({ name: 'x'.repeat(100_000) });
      const response = await fetch(`${localUrl}/controlPlane/v1/project`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      expect(response.status).to.equal(201);
      expect(await response.text()).to.equal(`got ${body.length}`);
      expect(seen[0]).to.include({ method: 'POST', url: '/api/controlPlane/v1/project', body });
    });

    it('a client x-token is replaced, never doubled (D16)', async () => {
      await start();
      await (await fetch(`${localUrl}/controlPlane/v1/x`, { headers: { 'X-Token': 'the-clients-own' } })).text();
      const tokens = seen[0]!.rawHeaders.filter((_v, i, raw) => i % 2 === 0 && raw[i]!.toLowerCase() === 'x-token').length;
      expect(tokens).to.equal(1);
      expect(seen[0]!.headers['x-token']).to.equal('secret-token');
    });

    it('without a token, the client’s x-token passes through', async () => {
      await start('');
      await (await fetch(`${localUrl}/controlPlane/v1/x`, { headers: { 'x-token': 'the-clients-own' } })).text();
      expect(seen[0]!.headers['x-token']).to.equal('the-clients-own');
    });

    it('hop-by-hop request headers, and those named in Connection, are removed', async () => {
      await start();
      await new Promise<void>((resolve, reject) => {
        const req = http.request(`${localUrl}/controlPlane/v1/x`, {
          headers: { connection: 'keep-alive, x-hop', 'x-hop': '1', 'keep-alive': 'timeout=5', te: 'trailers', 'proxy-authorization': 'Basic x', 'x-end': 'kept' },
        }, (res) => { res.resume(); res.on('end', resolve); });
        req.on('error', reject);
        req.end();
      });
      const headers = seen[0]!.headers;
      expect(headers).not.to.have.any.keys('x-hop', 'keep-alive', 'te', 'proxy-authorization');
      expect(headers['x-end']).to.equal('kept');
    });

    it('multi-valued response headers survive (several Set-Cookie, D16); the token never comes back', async () => {
      await start();
      answer = (_req, res) => {
        res.writeHead(200, [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2'], ['x-token', 'leak'], ['Connection', 'keep-alive']].flat());
        res.end();
      };
      const response = await fetch(`${localUrl}/controlPlane/v1/x`);
      expect(response.headers.getSetCookie()).to.deep.equal(['a=1', 'b=2']);
      expect(response.headers.get('x-token')).to.equal(null);
    });

    it('redirects are passed back, not followed', async () => {
      await start();
      answer = (_req, res) => { res.writeHead(302, { location: 'http://elsewhere.example.com/' }); res.end(); };
      const response = await fetch(`${localUrl}/controlPlane/v1/x`, { redirect: 'manual' });
      expect(response.status).to.equal(302);
      expect(response.headers.get('location')).to.equal('http://elsewhere.example.com/');
      expect(seen).to.have.length(1);
    });

    it('the configuration-service resource URI reaches the upstream escaped once more', async () => {
      await start();
      await (await fetch(`${localUrl}/configuration-service/v1/project/p/stage/s/service/c/resource/helm%2Fvalues.yaml?gitCommitID=1`)).text();
      expect(seen[0]!.url).to.equal('/api/configuration-service/v1/project/p/stage/s/service/c/resource/helm%252Fvalues.yaml?gitCommitID=1');
    });

    it('streams the answer: the first bytes arrive before the upstream has finished', async () => {
      await start();
      let finish!: () => void;
      answer = (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first part;');
        finish = () => res.end('second part');
      };
      const response = await fetch(`${localUrl}/controlPlane/v1/x`);
      const reader = response.body!.getReader();
      const first = await reader.read();
      expect(Buffer.from(first.value!).toString()).to.equal('first part;');
      finish();
      let rest = '';
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += Buffer.from(chunk.value).toString();
      expect(rest).to.equal('second part');
    });

    it('streams the request body: the upstream reads the first part before the client has sent the rest', async () => {
      const firstPart = new Promise<string>((resolve) => {
        upstream.removeAllListeners('request');
        upstream.on('request', (req: IncomingMessage, res: ServerResponse) => {
          req.setEncoding('utf8');
          let body = '';
          req.once('data', (chunk: string) => resolve(chunk));
          req.on('data', (chunk: string) => { body += chunk; });
          req.on('end', () => res.end(`upstream got ${body}`));
        });
      });
      await start();
      const answered = new Promise<string>((resolve, reject) => {
        const req = http.request(`${localUrl}/controlPlane/v1/upload`, { method: 'PUT', headers: { 'content-type': 'text/plain' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => { text += chunk; });
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.write('first;');
        void firstPart.then(() => req.end('second'));
      });
      expect(await firstPart).to.equal('first;');
      expect(await answered).to.equal('upstream got first;second');
    });

    it('a body of exactly the limit is forwarded; one byte more is a 413 naming the limit and the setting, and nothing is forwarded', async () => {
      await start('secret-token', 2_000, 1024);
      const ok = await fetch(`${localUrl}/controlPlane/v1/x`, { method: 'POST', body: 'x'.repeat(1024) });
      expect(ok.status).to.equal(200);
      const tooLarge = await fetch(`${localUrl}/controlPlane/v1/x`, { method: 'POST', body: 'x'.repeat(1025) });
      expect(tooLarge.status).to.equal(413);
      expect(await tooLarge.json()).to.deep.equal({ message: 'the request body is larger than 1024 bytes, the limit set by API_PROXY_MAX_PAYLOAD_BYTES_KB' });
      expect(seen.map((request) => request.body.length)).to.deep.equal([1024]);
    });

    it('a chunked body is cut at the limit as it streams: 413, and the upstream never gets a whole request', async () => {
      await start('secret-token', 2_000, 1024);
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(`${localUrl}/controlPlane/v1/x`, { method: 'POST' }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        for (let i = 0; i < 4; i++) req.write('x'.repeat(512));
        req.end();
      });
      expect(status).to.equal(413);
      expect(seen).to.deep.equal([]);
    });

    it('the credentials replace the client\'s: with OAuth, its Authorization header too; x-token and bearer both sent', async () => {
      proxy = new ApiProxy({
        endpoint: upstreamUrl, agents: new EgressAgents({ httpsProxy: undefined, httpProxy: undefined, proxyBypass: [] }),
        credentials: new KeptnCredentials('secret-token', { token: () => Promise.resolve('agent-bearer'), rejected: () => undefined }),
        timeoutMs: 2_000, maxBodyBytes: 1024, logger: logs.logger,
      });
      local = http.createServer((req, res) => { proxy.forward(req, res, req.url ?? '/', '', sendError); });
      localUrl = `http://127.0.0.1:${await listen(local)}`;
      await fetch(`${localUrl}/controlPlane/v1/x`, { headers: { 'authorization': 'Bearer client-token', 'x-token': 'client' } });
      expect(seen[0]!.headers).to.include({ 'authorization': 'Bearer agent-bearer', 'x-token': 'secret-token' });
    });

    it('no OAuth token to be had: 502 naming why, and nothing is forwarded', async () => {
      proxy = new ApiProxy({
        endpoint: upstreamUrl, agents: new EgressAgents({ httpsProxy: undefined, httpProxy: undefined, proxyBypass: [] }),
        credentials: new KeptnCredentials('', { token: () => Promise.reject(new Error('OAuth token endpoint answered 503')), rejected: () => undefined }),
        timeoutMs: 2_000, maxBodyBytes: 1024, logger: logs.logger,
      });
      local = http.createServer((req, res) => { proxy.forward(req, res, req.url ?? '/', '', sendError); });
      localUrl = `http://127.0.0.1:${await listen(local)}`;
      const response = await fetch(`${localUrl}/controlPlane/v1/x`, { method: 'POST', body: 'x' });
      expect(response.status).to.equal(502);
      expect(await response.json()).to.deep.equal({ message: 'the Keptn API cannot be called: OAuth token endpoint answered 503' });
      expect(seen).to.deep.equal([]);
    });

    it('an unknown prefix is a 404 with a JSON message, and nothing is forwarded', async () => {
      await start();
      const response = await fetch(`${localUrl}/v1/metadata`);
      expect(response.status).to.equal(404);
      expect(((await response.json()) as { message: string }).message).to.match(/no Keptn API is proxied at \/v1/);
      expect(seen).to.have.length(0);
    });

    it('an unreachable upstream is a 502 with a JSON message', async () => {
      await start();
      upstream.closeAllConnections();
      proxy.close();
      await new Promise((resolve) => upstream.close(resolve));
      const response = await fetch(`${localUrl}/controlPlane/v1/x`);
      expect(response.status).to.equal(502);
      expect(((await response.json()) as { message: string }).message).to.match(/unreachable \(ECONNREFUSED\)/);
      upstream = http.createServer();
      await listen(upstream);
    });

    it('an upstream that does not answer in time is a 504', async () => {
      await start('secret-token', 50);
      answer = () => undefined;
      const response = await fetch(`${localUrl}/controlPlane/v1/x`);
      expect(response.status).to.equal(504);
      expect(((await response.json()) as { message: string }).message).to.match(/within 50 ms/);
    });

    it('never logs the token', () => {
      expect(logs.text()).not.to.include('secret-token');
    });
  });
});
