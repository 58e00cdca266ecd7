import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import got from 'got';
import { EgressAgents, bypassesProxy, proxyFor, type EgressProxySettings } from '../lib/egress-proxy.ts';
import { startLoopbackProxy, type LoopbackProxy } from './helpers/http-proxy.ts';

const PROXY = new URL('http://proxy.corp:3128');
const SECURE_PROXY = new URL('http://secure-proxy.corp:3128');

function settings(proxyBypass: string[] = []): EgressProxySettings {
  return { httpProxy: PROXY, httpsProxy: SECURE_PROXY, proxyBypass };
}

describe('egress-proxy', () => {
  describe('proxyFor', () => {
    it('https targets go through HTTPS_PROXY, http targets through HTTP_PROXY', () => {
      expect(proxyFor(new URL('https://keptn.example.com/api'), settings())).to.equal(SECURE_PROXY);
      expect(proxyFor(new URL('http://keptn.example.com/api'), settings())).to.equal(PROXY);
    });

    it('no proxy for a protocol whose variable is unset', () => {
      expect(proxyFor(new URL('https://keptn.example.com'), { ...settings(), httpsProxy: undefined })).to.equal(undefined);
    });

    it('NO_PROXY wins', () => {
      expect(proxyFor(new URL('https://keptn.example.com'), settings(['example.com']))).to.equal(undefined);
    });
  });

  describe('bypassesProxy (NO_PROXY as curl reads it, plus CIDR)', () => {
    const cases: Array<[string, string, boolean]> = [
      ['*', 'https://anything.example', true],
      ['keptn.example.com', 'https://keptn.example.com', true],
      ['KEPTN.example.com', 'https://keptn.example.com/api', true],
      ['example.com', 'https://keptn.example.com', true],
      ['.example.com', 'https://keptn.example.com', true],
      ['*.example.com', 'https://keptn.example.com', true],
      ['.example.com', 'https://example.com', true],
      ['example.com', 'https://notexample.com', false],
      ['example.com', 'https://example.com.evil.io', false],
      ['keptn.example.com:8443', 'https://keptn.example.com:8443', true],
      ['keptn.example.com:8443', 'https://keptn.example.com', false],
      ['keptn.example.com:443', 'https://keptn.example.com', true],
      ['keptn.example.com:80', 'http://keptn.example.com', true],
      ['10.0.0.0/8', 'http://10.1.2.3:8080', true],
      ['10.0.0.0/8', 'http://11.1.2.3', false],
      ['10.0.0.0/8', 'http://keptn.example.com', false],
      ['192.168.1.7', 'http://192.168.1.7', true],
      ['168.1.7', 'http://192.168.1.7', false],
      ['::1', 'http://[::1]:8080', true],
      ['[::1]:8080', 'http://[::1]:8080', true],
      ['fd00::/8', 'http://[fd12::1]', true],
      ['10.0.0.0/99', 'http://10.1.2.3', false],
      ['', 'http://keptn.example.com', false],
      ['.', 'http://keptn.example.com', false],
    ];
    for (const [entry, target, bypasses] of cases) {
      it(`${JSON.stringify(entry)} ${bypasses ? 'bypasses' : 'does not bypass'} for ${target}`, () => {
        expect(bypassesProxy(new URL(target), [entry])).to.equal(bypasses);
      });
    }

    it('any entry of the list may match', () => {
      expect(bypassesProxy(new URL('https://keptn.example.com'), ['localhost', '127.0.0.1', 'example.com'])).to.equal(true);
    });
  });

  describe('EgressAgents against a loopback proxy', () => {
    let proxy: LoopbackProxy;
    let target: Server;
    let targetUrl: string;
    let agents: EgressAgents | undefined;

    beforeEach(async () => {
      proxy = await startLoopbackProxy({ credentials: 'corp user:p@ss' });
      target = http.createServer((req, res) => { res.end(`${req.method} ${req.url}`); });
      await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
      targetUrl = `http://127.0.0.1:${(target.address() as AddressInfo).port}`;
    });
    afterEach(async () => {
      agents?.close();
      await proxy.stop();
      target.closeAllConnections();
      await new Promise<void>((resolve) => target.close(() => resolve()));
    });

    it('an http call goes through HTTP_PROXY in a CONNECT tunnel, with Proxy-Authorization from the URL', async () => {
      const proxyUrl = new URL(proxy.url);
      proxyUrl.username = encodeURIComponent('corp user');
      proxyUrl.password = encodeURIComponent('p@ss');
      agents = new EgressAgents({ httpProxy: proxyUrl, httpsProxy: undefined, proxyBypass: [] });
      const url = new URL(`${targetUrl}/api/v1/event?x=1`);
      const body = await got(url, { agent: agents.forGot(url) }).text();
      expect(body).to.equal('GET /api/v1/event?x=1');
      expect(proxy.seen).to.deep.equal([{ method: 'CONNECT', target: url.host, proxyAuthorization: `Basic ${Buffer.from('corp user:p@ss').toString('base64')}` }]);
    });

    it('wrong proxy credentials: the call fails with the proxy\'s answer', async () => {
      const proxyUrl = new URL(proxy.url);
      proxyUrl.username = 'someone';
      agents = new EgressAgents({ httpProxy: proxyUrl, httpsProxy: undefined, proxyBypass: [] });
      const url = new URL(`${targetUrl}/x`);
      const error = await got(url, { agent: agents.forGot(url), retry: { limit: 0 } }).text().catch((thrown: unknown) => thrown);
      expect(String(error)).to.match(/407/);
    });

    it('NO_PROXY: the call goes straight to the target', async () => {
      agents = new EgressAgents({ httpProxy: new URL(proxy.url), httpsProxy: undefined, proxyBypass: ['127.0.0.0/8'] });
      const url = new URL(`${targetUrl}/direct`);
      expect(await got(url, { agent: agents.forGot(url) }).text()).to.equal('GET /direct');
      expect(proxy.seen).to.deep.equal([]);
    });

    it('one agent per protocol and proxy, kept for keep-alive', () => {
      agents = new EgressAgents(settings(['direct.example.com']));
      const a = agents.for(new URL('http://a.example.com'));
      expect(agents.for(new URL('http://b.example.com'))).to.equal(a);
      expect(agents.for(new URL('http://direct.example.com'))).to.not.equal(a);
      expect(agents.for(new URL('https://a.example.com'))).to.not.equal(a);
    });
  });
});
