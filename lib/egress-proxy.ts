/**
 * Outgoing HTTP(S) proxies: which calls to Keptn go through HTTPS_PROXY or
 * HTTP_PROXY, which NO_PROXY lets bypass them, and the connection agents
 * that do it. Every caller that talks to Keptn (API client, relay
 * forwarding, API proxy, OAuth) takes its agents from an `EgressAgents`.
 *
 * The proxy agents are hpagent's, which reach every target through a CONNECT
 * tunnel: for https, TLS runs end to end and the proxy sees only host and
 * port; plain http targets are tunnelled too, so the proxy must allow
 * CONNECT to Keptn's port (squid's default allows only 443). The recipient is never
 * reached through a proxy: it sits beside the agent, where a corporate proxy
 * cannot reach (the dispatcher takes no agents from here).
 */
import http from 'node:http';
import https from 'node:https';
import { BlockList, isIP } from 'node:net';
import { HttpProxyAgent, HttpsProxyAgent } from 'hpagent';

export interface EgressProxySettings {
  readonly httpsProxy: URL | undefined;
  readonly httpProxy: URL | undefined;
  /** NO_PROXY entries: `*`, host, `.domain`/`domain` (suffix), `host:port`, IP, CIDR. */
  readonly proxyBypass: readonly string[];
}

/** The proxy a call to `target` goes through; undefined: straight to the target. */
export function proxyFor(target: URL, settings: EgressProxySettings): URL | undefined {
  const proxy = target.protocol === 'https:' ? settings.httpsProxy : settings.httpProxy;
  if (proxy === undefined || bypassesProxy(target, settings.proxyBypass)) return undefined;
  return proxy;
}

/** Whether NO_PROXY names the target, as curl reads it (plus CIDR ranges). */
export function bypassesProxy(target: URL, proxyBypass: readonly string[]): boolean {
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase().replace(/\.$/, '');
  const port = target.port !== '' ? target.port : target.protocol === 'https:' ? '443' : '80';
  return proxyBypass.some((raw) => {
    const entry = raw.trim().toLowerCase();
    if (entry === '*') return true;
    if (entry.includes('/')) return inCidr(host, entry);
    const [entryHost, entryPort] = splitHostPort(entry);
    if (entryPort !== undefined && entryPort !== port) return false;
    const name = entryHost.replace(/^\*?\./, '').replace(/\.$/, '');
    if (name === '') return false;
    return host === name || (isIP(host) === 0 && host.endsWith(`.${name}`));
  });
}

/** `host`, `host:port`, `[v6]:port` or a bare IPv6 address. */
function splitHostPort(entry: string): [string, string | undefined] {
  const bracketed = /^\[(.*)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return [bracketed[1] ?? '', bracketed[2]];
  if (isIP(entry) === 6) return [entry, undefined];
  const withPort = /^(.*):(\d+)$/.exec(entry);
  return withPort ? [withPort[1] ?? '', withPort[2]] : [entry, undefined];
}

function inCidr(host: string, cidr: string): boolean {
  const [network = '', bits = ''] = cidr.split('/');
  const family = isIP(network);
  const prefix = Number(bits);
  if (family === 0 || isIP(host) !== family || !/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128)) return false;
  const list = new BlockList();
  const type = family === 4 ? 'ipv4' : 'ipv6';
  list.addSubnet(network, prefix, type);
  return list.check(host, type);
}

/** What every connection to Keptn shares: TLS verification, keep-alive, pool sizes. */
export type AgentOptions = https.AgentOptions;

/**
 * The connection agents for calls to Keptn, one per target protocol and
 * proxy (direct or proxied), made on first use and kept for keep-alive.
 */
export class EgressAgents {
  readonly #settings: EgressProxySettings;
  readonly #options: AgentOptions;
  readonly #agents = new Map<string, http.Agent>();

  constructor(settings: EgressProxySettings, options: AgentOptions = { keepAlive: true }) {
    this.#settings = settings;
    this.#options = options;
  }

  /** The proxy a call to `target` goes through, if any (for log lines). */
  proxyFor(target: URL): URL | undefined {
    return proxyFor(target, this.#settings);
  }

  /** The agent for a request to `target`: an `https.Agent` for https targets, an `http.Agent` otherwise. */
  for(target: URL): http.Agent {
    const proxy = this.proxyFor(target);
    const secure = target.protocol === 'https:';
    const key = `${secure ? 'https' : 'http'} ${proxy?.href ?? 'direct'}`;
    let agent = this.#agents.get(key);
    if (agent === undefined) {
      agent = createAgent(secure, proxy, this.#options);
      this.#agents.set(key, agent);
    }
    return agent;
  }

  /** The same agent, as got takes it (`agent: {https}` or `{http}`). */
  forGot(target: URL): { http?: http.Agent; https?: https.Agent } {
    const agent = this.for(target);
    // An https target always gets an https.Agent (plain or hpagent's HttpsProxyAgent): see createAgent.
    return target.protocol === 'https:' ? { https: agent as https.Agent } : { http: agent };
  }

  /** Closes every pooled connection. */
  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}

function createAgent(secure: boolean, proxy: URL | undefined, options: AgentOptions): http.Agent {
  if (proxy === undefined) return secure ? new https.Agent(options) : new http.Agent(options);
  // TLS to the proxy itself (an https:// proxy URL) is verified like the calls to Keptn.
  const proxied = { ...options, proxy, proxyRequestOptions: { rejectUnauthorized: options.rejectUnauthorized ?? true } };
  return secure ? new HttpsProxyAgent(proxied) : new HttpProxyAgent(proxied);
}
