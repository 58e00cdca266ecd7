/**
 * The agent's configuration: read once at start from the environment, then the
 * command-line flags on top, every value parsed to its real type, the URLs
 * derived, and the result frozen. Pure: the caller passes `env` and `flags`.
 */
import { InvalidValue, SETTINGS, flagOf, settingRows, type SettingKey, type SettingValues } from './settings.ts';

export type ConnectionType = 'http' | 'nats';

export interface Config extends SettingValues {
  readonly connectionType: ConnectionType;
  /** `<base>/<type>` is polled; ends in `/v1/event/triggered`. */
  readonly pollingUrl: URL;
  /** Where relayed events are POSTed; undefined in NATS mode, where they are published to NATS. */
  readonly forwardingUrl: URL | undefined;
  /**
   * Registration and logs: `<KEPTN_API_ENDPOINT>/controlPlane` in HTTP mode, the
   * in-cluster shipyard-controller in NATS mode. Absent with the 0.8.0 HTTP settings alone.
   */
  readonly controlPlaneUrl: URL | undefined;
  /** PUBSUB_GROUP, or its default: the NATS queue group; '' for none. */
  readonly pubsubGroup: string;
  /** Where polled events are dispatched. */
  readonly recipientUrl: URL;
  /** `LOCATION`, or the mode's default. */
  readonly location: string;
  /** The OAuth client, when all of its settings are given; undefined: no bearer token is sent. */
  readonly oauth: OAuthClient | undefined;
}

/** An OAuth client-credentials client: where its token comes from, and who it is. */
export interface OAuthClient {
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scopes: readonly string[];
  /** The token endpoint itself, or the discovery document naming it. */
  readonly source: { readonly tokenUrl: URL } | { readonly discoveryUrl: URL };
}

/** A setting with a value it cannot take. Its message is the one line the CLI prints. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly setting: string;
  readonly value: string;
  readonly expected: string;
  constructor(setting: string, value: string, expected: string) {
    super(`${setting}=${JSON.stringify(value)}: expected ${expected}`);
    this.setting = setting;
    this.value = value;
    this.expected = expected;
  }
}

/** Flag values as commander parsed them: strings, or `true` for a bare boolean flag. */
export type Flags = Readonly<Partial<Record<string, string | boolean>>>;

export interface ConfigSources {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly flags?: Flags;
}

/** Where the polling base points in NATS mode (the reference's constant; NATS mode does not poll). */
const IN_CLUSTER_POLLING_URL = 'http://shipyard-controller:8080/v1/event/triggered';
/** The shipyard-controller inside the cluster: registration and logs in NATS mode (spec §11.3). */
const IN_CLUSTER_CONTROL_PLANE_URL = 'http://shipyard-controller:8080';

/**
 * Builds the configuration. Environment first (aliases folded in; an empty
 * variable counts as unset, so a Helm chart rendering `""` gets the default),
 * flags override. Throws `ConfigError` naming the variable or flag.
 */
export function loadConfig({ env, flags = {} }: ConfigSources): Config {
  const values: Record<string, unknown> = {};
  for (const [key, row] of settingRows()) {
    const [source, text] = rawValue(key, env, flags);
    try {
      values[key] = row.parse(text);
    } catch (error) {
      if (error instanceof InvalidValue) throw new ConfigError(source, withoutCredentials(text), error.expected);
      throw error;
    }
  }
  return Object.freeze(derive(values as unknown as SettingValues, env, flags));
}

/** A bad value as the error shows it: a URL's `user:password@` (a proxy's, NATS's) is not printed. */
function withoutCredentials(text: string): string {
  // Up to the last `@` before the path: a password may hold a raw `@`.
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^/\s]*@/i, '$1***@');
}

/** The text of one setting and the name it came from (flag, variable, alias or default). */
function rawValue(key: SettingKey, env: ConfigSources['env'], flags: Flags): [string, string] {
  const row = SETTINGS[key];
  const flag = flags[key];
  if (flag !== undefined) return [flagOf(row), flag === true ? 'true' : String(flag)];
  for (const name of [row.env, ...(row.aliases ?? [])]) {
    const value = env[name];
    if (value !== undefined && value !== '') return [name, value];
  }
  return [row.env, row.default];
}

/** The name a setting was given by, for error messages about derived values. */
function sourceName(key: SettingKey, env: ConfigSources['env'], flags: Flags): string {
  return rawValue(key, env, flags)[0];
}

function derive(values: SettingValues, env: ConfigSources['env'], flags: Flags): Config {
  const name = (key: SettingKey): string => sourceName(key, env, flags);
  const endpoint = values.keptnApiEndpoint;
  const connectionType: ConnectionType =
    values.connectionType ?? (endpoint !== undefined || values.httpEventPollingEndpoint !== undefined ? 'http' : 'nats');

  if (values.apiProxyPath === values.eventForwardingPath) {
    throw new ConfigError(name('eventForwardingPath'), values.eventForwardingPath, 'a path different from API_PROXY_PATH');
  }
  const common = {
    ...values,
    connectionType,
    oauth: oauthClient(values),
    recipientUrl: recipientUrl(values.pubsubRecipient, values.pubsubRecipientPort, values.pubsubRecipientPath, name('pubsubRecipient')),
    location: values.location || (connectionType === 'http' ? 'remote-execution-plane' : 'control-plane'),
    // Replicas of one deployment (or VMs of one integration) share the work; distinct services each get every event.
    pubsubGroup: values.pubsubGroup || values.k8sDeploymentName || values.integrationName,
  };

  if (connectionType === 'nats') {
    // In the cluster the agent talks to the Keptn services directly; a public endpoint would say otherwise.
    if (endpoint !== undefined) {
      throw new ConfigError(name('keptnApiEndpoint'), endpoint.href,
        'no value in NATS mode (CONNECTION_TYPE=nats): the in-cluster Keptn services are reached directly');
    }
    const invalid = values.pubsubTopic.find((topic) => !isNatsSubject(topic));
    if (invalid !== undefined) {
      throw new ConfigError(name('pubsubTopic'), values.pubsubTopic.join(','),
        `NATS subjects: "${invalid}" is not one (dot-separated tokens; * for one token, > only as the last)`);
    }
    return {
      ...common,
      pollingUrl: inClusterPollingUrl(),
      // The 0.8.0 rule: without a forwarding endpoint, relayed events are published to NATS.
      forwardingUrl: values.httpEventForwardingEndpoint,
      controlPlaneUrl: new URL(IN_CLUSTER_CONTROL_PLANE_URL),
    };
  }

  const pollingUrl = values.httpEventPollingEndpoint ?? (endpoint && joinPath(endpoint, '/controlPlane/v1/event/triggered'));
  if (pollingUrl === undefined) {
    throw new ConfigError(name('keptnApiEndpoint'), '', 'an absolute http(s) URL such as https://keptn.example.com/api (HTTP mode needs it)');
  }
  const forwardingUrl = values.httpEventForwardingEndpoint ?? (endpoint && joinPath(endpoint, '/v1/event'));
  if (forwardingUrl === undefined) {
    throw new ConfigError(name('httpEventForwardingEndpoint'), '',
      'an absolute http(s) URL: without KEPTN_API_ENDPOINT, relayed events need HTTP_EVENT_FORWARDING_ENDPOINT');
  }
  // From 0.9 on the control plane owns the subscriptions: PUBSUB_TOPIC only seeds them.
  if (values.pubsubTopic.length === 0 && values.keptnApiVersion === '0.8') {
    throw new ConfigError(name('pubsubTopic'), '', 'one or more comma-separated event types (required in HTTP mode with KEPTN_API_VERSION=0.8)');
  }
  // The heartbeat that brings a 1.x control plane's subscriptions pings the registration.
  if (values.keptnApiVersion === '1.x' && (endpoint === undefined || values.disableRegistration)) {
    throw new ConfigError(name('keptnApiVersion'), values.keptnApiVersion,
      '0.8 or auto here: a 1.x control plane sends the subscriptions to registered agents, which needs KEPTN_API_ENDPOINT and DISABLE_REGISTRATION=false');
  }
  const wildcard = values.pubsubTopic.find((topic) => /[*>]/.test(topic));
  if (wildcard !== undefined) {
    throw new ConfigError(name('pubsubTopic'), values.pubsubTopic.join(','),
      `exact event types: "${wildcard}" is a NATS wildcard, which the Keptn API does not match`);
  }

  return {
    ...common,
    pollingUrl: withDefaultPollingPath(pollingUrl),
    forwardingUrl,
    controlPlaneUrl: endpoint && controlPlaneBase(endpoint),
  };
}

/**
 * The OAuth client: all of its settings or none. A partial set is an error
 * naming the first one missing (the reference silently ran without OAuth).
 */
function oauthClient(values: SettingValues): OAuthClient | undefined {
  const { oauthClientId: clientId, oauthClientSecret: clientSecret, oauthScopes: scopes, oauthTokenUrl: tokenUrl, oauthDiscovery: discoveryUrl } = values;
  const required: ReadonlyArray<readonly [string, boolean]> = [
    ['OAUTH_CLIENT_ID', clientId !== ''],
    ['OAUTH_CLIENT_SECRET', clientSecret !== ''],
    ['OAUTH_SCOPES', scopes.length > 0],
    ['OAUTH_TOKEN_URL', tokenUrl !== undefined || discoveryUrl !== undefined],
  ];
  if (required.every(([, set]) => !set)) return undefined;
  const missing = required.filter(([, set]) => !set).map(([env]) => env);
  if (missing.length > 0) {
    const given = required.filter(([, set]) => set).map(([env]) => (env === 'OAUTH_TOKEN_URL' && tokenUrl === undefined ? 'OAUTH_DISCOVERY' : env));
    throw new ConfigError(missing[0]!, '',
      `a value: ${given.join(', ')} ${given.length === 1 ? 'is' : 'are'} set, and OAuth also needs ${missing.join(', ').replace('OAUTH_TOKEN_URL', 'OAUTH_TOKEN_URL or OAUTH_DISCOVERY')}`);
  }
  return { clientId, clientSecret, scopes, source: tokenUrl !== undefined ? { tokenUrl } : { discoveryUrl: discoveryUrl! } };
}

/** A subject to subscribe to: non-empty tokens without blanks; `*` and `>` only as whole tokens, `>` only last. */
export function isNatsSubject(subject: string): boolean {
  const tokens = subject.split('.');
  return tokens.every((token, index) => token !== '' && !/\s/.test(token)
    && (!/[*>]/.test(token) || token === '*' || (token === '>' && index === tokens.length - 1)));
}

/** `base` + `path`, with one trailing `/` of the base dropped (the reference's relay URL kept it: `…/api//v1/event`). */
export function joinPath(base: URL, path: string): URL {
  const url = new URL(base.href);
  url.pathname = url.pathname.replace(/\/$/, '') + path;
  return url;
}

/** The 0.8.0 polling endpoint with an empty path means `/v1/event/triggered`, as it did then. */
function withDefaultPollingPath(url: URL): URL {
  if (url.pathname !== '/' && url.pathname !== '') return url;
  return new URL('/v1/event/triggered', url);
}

/** `<endpoint>/controlPlane`, not doubled when the endpoint already ends with it (as the reference). */
export function controlPlaneBase(endpoint: URL): URL {
  return /\/controlPlane\/?$/.test(endpoint.pathname) ? joinPath(endpoint, '') : joinPath(endpoint, '/controlPlane');
}

/** The polling base the reference uses without a Keptn API endpoint. */
export function inClusterPollingUrl(): URL {
  return new URL(IN_CLUSTER_POLLING_URL);
}

/**
 * The recipient's URL as the reference builds it: host (with `http://` added
 * when there is no scheme) + `:` + port + `/` + path. A port or path inside
 * PUBSUB_RECIPIENT would be concatenated into nonsense, so it is refused.
 */
export function recipientUrl(recipient: string, port: number, path: string, source = 'PUBSUB_RECIPIENT'): URL {
  const withScheme = /^https?:\/\//i.test(recipient) ? recipient : `http://${recipient}`;
  const expected = 'a host name or http(s)://host, without port or path (use PUBSUB_RECIPIENT_PORT and PUBSUB_RECIPIENT_PATH)';
  let host: URL;
  try {
    host = new URL(withScheme.replace(/\/$/, ''));
  } catch {
    throw new ConfigError(source, recipient, expected);
  }
  if (host.port !== '' || host.pathname !== '/' || host.search !== '' || host.hash !== '' || host.username !== '') {
    throw new ConfigError(source, recipient, expected);
  }
  return new URL(`${host.protocol}//${host.host}:${port}${path === '' ? '' : `/${path.replace(/^\//, '')}`}`);
}

/** The values that must never appear in any output. */
export function secretsOf(config: Config): string[] {
  // PUBSUB_URL may carry NATS credentials: nats://user:password@host, or nats://token@host.
  // The user name is secret only in the token form: redacting a plain user name (often a
  // word like "keptn") would blot out every log line that mentions it.
  const nats = new URL(config.pubsubUrl);
  const natsSecrets = nats.password !== '' ? urlEncodedAndRaw(nats.password) : urlEncodedAndRaw(nats.username);
  // A proxy URL may carry the proxy's user and password.
  const proxies = [config.httpsProxy, config.httpProxy].flatMap((url) => (url ? [...urlEncodedAndRaw(url.username), ...urlEncodedAndRaw(url.password)] : []));
  return [...new Set([config.keptnApiToken, ...natsSecrets, config.oauthClientSecret, ...proxies])].filter((secret) => secret !== '');
}

/** A URL component as `URL` holds it (percent-encoded) and as the text of the setting may hold it (raw). */
function urlEncodedAndRaw(component: string): string[] {
  let raw = component;
  try {
    raw = decodeURIComponent(component);
  } catch {
    // A malformed escape is kept as it is: it can only appear encoded.
  }
  return [component, raw];
}
