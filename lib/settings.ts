/**
 * Every setting of the agent, one row each: environment variable, flag,
 * aliases, default and documentation. The commander options, `--help`, the
 * README's configuration table and `loadConfig` all come from this table, so
 * they cannot drift apart.
 */
import { parseDuration } from './duration.ts';

/** Thrown by a parser: says what a valid value looks like. */
export class InvalidValue extends Error {
  override name = 'InvalidValue';
  readonly expected: string;
  constructor(expected: string) {
    super(expected);
    this.expected = expected;
  }
}

export interface Setting<T> {
  /** Environment variable name. */
  readonly env: string;
  /** Older names still read (0.8.0 documentation), after `env`. */
  readonly aliases?: readonly string[];
  /** The flag, when it is not `--` + the variable's name in kebab-case. */
  readonly flag?: string;
  /** The default as text, parsed like any other value; `''` means unset. */
  readonly default: string;
  /** Default shown in help and README when it is derived from other settings. */
  readonly shownDefault?: string;
  readonly doc: string;
  /** `true`/`false` setting: the bare flag means `true`. */
  readonly boolean?: boolean;
  readonly parse: (text: string) => T;
}

const text = (value: string): string => value;

function httpUrl(value: string): URL | undefined {
  if (value === '') return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidValue('an absolute http(s) URL such as https://keptn.example.com/api');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new InvalidValue('an absolute http(s) URL such as https://keptn.example.com/api');
  }
  // These URLs are logged (polling, forwarding, token endpoint): credentials have settings of their own.
  if (url.username !== '' || url.password !== '') {
    throw new InvalidValue('a URL without user:password@ (the API token goes in KEPTN_API_TOKEN)');
  }
  return url;
}

function bool(value: string): boolean {
  const lower = value.toLowerCase();
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  throw new InvalidValue('true or false');
}

function list(value: string): readonly string[] {
  return Object.freeze(value.split(',').map((item) => item.trim()).filter((item) => item !== ''));
}

function integer(value: string, min: number, max: number, what: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidValue(what);
  const n = Number(value.trim());
  if (n < min || n > max) throw new InvalidValue(what);
  return n;
}

const listenPort = (value: string): number => integer(value, 0, 65535, 'a port number from 0 to 65535 (0 picks a free port)');
const remotePort = (value: string): number => integer(value, 1, 65535, 'a port number from 1 to 65535');

function duration(min: 'positive' | 'zero'): (value: string) => number {
  return (value) => {
    const ms = parseDuration(value);
    if (ms === undefined || (min === 'positive' && ms <= 0)) {
      throw new InvalidValue(`${min === 'positive' ? 'a positive number of seconds' : 'seconds'} or a duration like 250ms, 2s or 1m30s`);
    }
    return ms;
  };
}

function oneOf<T extends string>(...values: readonly T[]): (value: string) => T {
  return (value) => {
    const lower = value.toLowerCase();
    const found = values.find((v) => v === lower);
    if (found === undefined) throw new InvalidValue(`one of ${values.join(', ')}`);
    return found;
  };
}

/** A NATS server: `nats://host[:port]` or `tls://host[:port]`; a bare `host[:port]` means `nats://`. */
function natsUrl(value: string): string {
  const withScheme = value.includes('://') ? value : `nats://${value}`;
  const expected = 'a NATS server URL such as nats://keptn-nats:4222';
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new InvalidValue(expected);
  }
  if ((url.protocol !== 'nats:' && url.protocol !== 'tls:') || url.hostname === '' || (url.pathname !== '' && url.pathname !== '/')) {
    throw new InvalidValue(expected);
  }
  return withScheme;
}

/** A proxy: `http(s)://[user:password@]host[:port]`; a bare `host:port` means `http://`, as curl reads it. */
function proxyUrl(value: string): URL | undefined {
  if (value === '') return undefined;
  const expected = 'a proxy URL such as http://proxy.example.com:3128';
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    throw new InvalidValue(expected);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '' || (url.pathname !== '/' && url.pathname !== '')) {
    throw new InvalidValue(expected);
  }
  return url;
}

function urlPath(value: string): string {
  if (!value.startsWith('/')) throw new InvalidValue('a path starting with /');
  return value;
}

const setting = <T>(row: Setting<T>): Setting<T> => row;

/** The settings table. Keys are the flags in camelCase, as commander names them. */
export const SETTINGS = {
  keptnApiEndpoint: setting({
    env: 'KEPTN_API_ENDPOINT', default: '', parse: httpUrl,
    doc: 'Keptn API base URL including its /api prefix, e.g. https://keptn.example.com/api. Set → HTTP (execution-plane) mode; empty → NATS (in-cluster) mode',
  }),
  keptnApiToken: setting({
    env: 'KEPTN_API_TOKEN', aliases: ['HTTP_EVENT_ENDPOINT_AUTH_TOKEN'], default: '', parse: text,
    doc: 'Keptn API token, sent as x-token; never logged',
  }),
  connectionType: setting({
    env: 'CONNECTION_TYPE', default: '', shownDefault: 'derived', parse: (v: string) => (v === '' ? undefined : oneOf('http', 'nats')(v)),
    doc: 'http or nats; http when KEPTN_API_ENDPOINT (or HTTP_EVENT_POLLING_ENDPOINT) is set, else nats',
  }),
  httpEventPollingEndpoint: setting({
    env: 'HTTP_EVENT_POLLING_ENDPOINT', default: '', shownDefault: 'derived', parse: httpUrl,
    doc: 'Polling base URL ending in /v1/event/triggered (0.8.0 name); default <KEPTN_API_ENDPOINT>/controlPlane/v1/event/triggered',
  }),
  httpEventForwardingEndpoint: setting({
    env: 'HTTP_EVENT_FORWARDING_ENDPOINT', default: '', shownDefault: 'derived', parse: httpUrl,
    doc: 'URL relayed events are POSTed to (0.8.0 name); default <KEPTN_API_ENDPOINT>/v1/event; in NATS mode, empty → published to NATS',
  }),
  httpPollingInterval: setting({
    env: 'HTTP_POLLING_INTERVAL', default: '10', parse: duration('positive'),
    doc: 'Time between poll cycles: bare seconds, or a duration such as 250ms, 2s, 1m30s',
  }),
  keptnApiVersion: setting({
    env: 'KEPTN_API_VERSION', default: 'auto', parse: oneOf('auto', '0.8', '1.x'),
    doc: 'Keptn control plane generation: 0.8 (subscriptions from PUBSUB_TOPIC and *_FILTER), 1.x (0.9 to 1.4: the control plane owns the subscriptions, sent with the heartbeat), or auto (decided from the heartbeat answer)',
  }),
  heartbeatInterval: setting({
    env: 'HEARTBEAT_INTERVAL', default: '10s', parse: duration('positive'),
    doc: 'Time between heartbeats to a 1.x control plane; each answer brings the current subscriptions',
  }),
  registrationInterval: setting({
    env: 'REGISTRATION_INTERVAL', default: '10s', parse: duration('positive'),
    doc: 'Time between re-registrations with the control plane',
  }),
  pubsubTopic: setting({
    env: 'PUBSUB_TOPIC', default: '', parse: list,
    doc: 'Comma-separated event types: HTTP mode polls these exact types (required with KEPTN_API_VERSION=0.8; on a 1.x control plane they seed the subscriptions while it lists none); NATS mode subscribes to them as subjects, wildcards allowed (sh.keptn.>)',
  }),
  pubsubRecipient: setting({
    env: 'PUBSUB_RECIPIENT', default: 'http://127.0.0.1', parse: text,
    doc: 'Host or scheme://host of the Keptn-service events are dispatched to; http:// is added when no scheme',
  }),
  pubsubRecipientPort: setting({ env: 'PUBSUB_RECIPIENT_PORT', default: '8080', parse: remotePort, doc: 'Port of the recipient' }),
  pubsubRecipientPath: setting({ env: 'PUBSUB_RECIPIENT_PATH', default: '', parse: text, doc: 'Path of the recipient' }),
  apiProxyPort: setting({
    env: 'API_PROXY_PORT', aliases: ['RCV_PORT'], default: '8081', parse: listenPort,
    doc: 'Local port for the event relay and the Keptn API proxy',
  }),
  apiProxyPath: setting({ env: 'API_PROXY_PATH', default: '/', parse: urlPath, doc: 'Path under which the Keptn API proxy is served' }),
  eventForwardingPath: setting({
    env: 'EVENT_FORWARDING_PATH', aliases: ['RCV_PATH'], default: '/event', parse: urlPath,
    doc: 'Path on the local port where the recipient posts its events',
  }),
  httpSslVerify: setting({
    env: 'HTTP_SSL_VERIFY', default: 'true', boolean: true, parse: bool,
    doc: 'false disables TLS certificate verification towards Keptn (logged as a warning)',
  }),
  projectFilter: setting({ env: 'PROJECT_FILTER', default: '', parse: list, doc: 'Comma list of projects whose events are dispatched' }),
  stageFilter: setting({ env: 'STAGE_FILTER', default: '', parse: list, doc: 'Comma list of stages whose events are dispatched' }),
  serviceFilter: setting({ env: 'SERVICE_FILTER', default: '', parse: list, doc: 'Comma list of services whose events are dispatched' }),
  disableRegistration: setting({
    env: 'DISABLE_REGISTRATION', default: 'false', boolean: true, parse: bool,
    doc: 'true: do not register with the control plane',
  }),
  location: setting({
    env: 'LOCATION', default: '', shownDefault: 'remote-execution-plane (HTTP), control-plane (NATS)', parse: text,
    doc: 'metadata.location of the registration',
  }),
  distributorVersion: setting({ env: 'DISTRIBUTOR_VERSION', default: '', shownDefault: 'package version', parse: text, doc: 'metadata.distributorversion of the registration' }),
  integrationVersion: setting({
    env: 'VERSION', flag: '--integration-version', default: '', parse: text,
    doc: 'metadata.integrationversion: the version of the Keptn-service',
  }),
  k8sDeploymentName: setting({ env: 'K8S_DEPLOYMENT_NAME', default: '', parse: text, doc: 'Registration name and kubernetesmetadata.deploymentname' }),
  k8sPodName: setting({ env: 'K8S_POD_NAME', default: '', parse: text, doc: 'kubernetesmetadata.podname of the registration' }),
  k8sNamespace: setting({ env: 'K8S_NAMESPACE', default: '', parse: text, doc: 'kubernetesmetadata.namespace of the registration (host name when empty)' }),
  k8sNodeName: setting({ env: 'K8S_NODE_NAME', default: '', parse: text, doc: 'metadata.hostname of the registration (host name when empty)' }),
  pubsubUrl: setting({
    env: 'PUBSUB_URL', default: 'nats://keptn-nats-cluster', parse: natsUrl,
    doc: 'NATS server URL (NATS mode): events are received from it and relayed events published to it',
  }),
  pubsubGroup: setting({
    env: 'PUBSUB_GROUP', default: '', shownDefault: 'K8S_DEPLOYMENT_NAME, else INTEGRATION_NAME', parse: text,
    doc: 'NATS queue group (NATS mode): agents in one group share the events, each reaches one of them; none when all three are empty',
  }),
  apiProxyBindAddress: setting({
    env: 'API_PROXY_BIND_ADDRESS', default: '127.0.0.1', parse: text,
    doc: 'Address the local relay/proxy port binds to; 0.0.0.0 when the recipient runs in another pod',
  }),
  healthEndpointPort: setting({
    env: 'HEALTH_ENDPOINT_PORT', default: '10999', parse: listenPort,
    doc: 'Port of /health (liveness), /ready (readiness) and /metrics (Prometheus)',
  }),
  logLevel: setting({ env: 'LOG_LEVEL', default: 'info', parse: oneOf('error', 'warn', 'info', 'debug'), doc: 'error, warn, info or debug' }),
  maxConcurrentDispatches: setting({
    env: 'MAX_CONCURRENT_DISPATCHES', default: '16', parse: (v: string) => integer(v, 1, 10_000, 'a whole number from 1 to 10000'),
    doc: 'Dispatches in flight to the recipient at once',
  }),
  dispatchTimeout: setting({ env: 'DISPATCH_TIMEOUT', default: '5s', parse: duration('positive'), doc: 'Time limit of one dispatch attempt' }),
  stateDir: setting({
    env: 'STATE_DIR', default: '', parse: text,
    doc: 'Directory for the dedup record and the outbox, kept across restarts; in memory when empty',
  }),
  integrationName: setting({
    env: 'INTEGRATION_NAME', default: '', shownDefault: 'host name', parse: text,
    doc: 'Registration name when K8S_DEPLOYMENT_NAME is empty (a VM)',
  }),
  unregisterOnShutdown: setting({
    env: 'UNREGISTER_ON_SHUTDOWN', default: 'false', boolean: true, parse: bool,
    doc: 'true: delete the registration at shutdown (on a 1.x control plane this deletes the subscriptions users edited too)',
  }),
  shutdownTimeout: setting({ env: 'SHUTDOWN_TIMEOUT', default: '20s', parse: duration('zero'), doc: 'Grace period for in-flight work at shutdown' }),
  outboxMaxAge: setting({
    env: 'OUTBOX_MAX_AGE', default: '24h', parse: duration('positive'),
    doc: 'How long a relayed event is retried before it goes to the dead-letter file',
  }),
  apiProxyHttpTimeout: setting({
    env: 'API_PROXY_HTTP_TIMEOUT', default: '30', parse: duration('positive'),
    doc: 'Time limit of one call to Keptn (API client, relay forwarding, OAuth); for a proxied call, the longest silence from Keptn (504 when no answer comes): bare seconds as the reference, or a duration',
  }),
  apiProxyMaxPayloadBytesKb: setting({
    env: 'API_PROXY_MAX_PAYLOAD_BYTES_KB', default: '1024', parse: (v: string) => integer(v, 1, 1_048_576, 'a whole number of KiB from 1 to 1048576'),
    doc: 'Largest request body on the local port (relay and API proxy), in KiB; larger → 413 (the reference\'s default was 64)',
  }),
  oauthClientId: setting({ env: 'OAUTH_CLIENT_ID', default: '', parse: text, doc: 'OAuth client id (client-credentials grant); OAuth is on when id, secret, scopes and a token or discovery URL are set' }),
  oauthClientSecret: setting({ env: 'OAUTH_CLIENT_SECRET', default: '', parse: text, doc: 'OAuth client secret; never logged' }),
  oauthScopes: setting({ env: 'OAUTH_SCOPES', default: '', parse: list, doc: 'Comma list of OAuth scopes asked for' }),
  oauthTokenUrl: setting({ env: 'OAUTH_TOKEN_URL', default: '', parse: httpUrl, doc: 'OAuth token endpoint; wins over OAUTH_DISCOVERY' }),
  oauthDiscovery: setting({
    env: 'OAUTH_DISCOVERY', default: '', parse: httpUrl,
    doc: 'OpenID discovery document URL (…/.well-known/openid-configuration) whose token_endpoint is used',
  }),
  httpsProxy: setting({
    env: 'HTTPS_PROXY', aliases: ['https_proxy'], default: '', parse: proxyUrl,
    doc: 'Proxy for https:// calls to Keptn (CONNECT tunnel); user:password in the URL is sent as Proxy-Authorization and never logged',
  }),
  httpProxy: setting({
    env: 'HTTP_PROXY', aliases: ['http_proxy'], default: '', parse: proxyUrl,
    doc: 'Proxy for http:// calls to Keptn; the recipient is never reached through a proxy',
  }),
  proxyBypass: setting({
    env: 'NO_PROXY', aliases: ['no_proxy'], flag: '--proxy-bypass', default: '', parse: list,
    doc: 'Comma list of hosts reached without proxy: host, .domain or domain (suffix), host:port, IP, CIDR, * for all',
  }),
} as const;

export type SettingKey = keyof typeof SETTINGS;
export type SettingValues = { readonly [K in SettingKey]: ReturnType<(typeof SETTINGS)[K]['parse']> };

/** The flag of a setting: `--` + the variable's name in kebab-case unless the row says otherwise. */
export function flagOf(row: Setting<unknown>): string {
  return row.flag ?? `--${row.env.toLowerCase().replaceAll('_', '-')}`;
}

/** All rows, in table order, with their keys. */
export function settingRows(): ReadonlyArray<readonly [SettingKey, Setting<unknown>]> {
  return Object.entries(SETTINGS) as Array<[SettingKey, Setting<unknown>]>;
}
