import { expect } from 'chai';
import { ConfigError, inClusterPollingUrl, loadConfig, recipientUrl, secretsOf, type Flags } from '../lib/config.ts';

/** The least an HTTP-mode agent needs. */
const BASE = { KEPTN_API_ENDPOINT: 'https://keptn.example.com/api', PUBSUB_TOPIC: 'sh.keptn.event.deployment.triggered' };

function load(env: Record<string, string>, flags: Flags = {}) {
  return loadConfig({ env, flags });
}

function configError(env: Record<string, string>, flags: Flags = {}): ConfigError {
  try {
    load(env, flags);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  describe('defaults (the reference 0.8.7 values, plus this project’s)', () => {
    const config = load(BASE);
    const expected = {
      keptnApiToken: '',
      connectionType: 'http',
      httpPollingInterval: 10_000,
      registrationInterval: 10_000,
      pubsubRecipient: 'http://127.0.0.1',
      pubsubRecipientPort: 8080,
      pubsubRecipientPath: '',
      apiProxyPort: 8081,
      apiProxyPath: '/',
      eventForwardingPath: '/event',
      httpSslVerify: true,
      disableRegistration: false,
      location: 'remote-execution-plane',
      pubsubUrl: 'nats://keptn-nats-cluster',
      apiProxyBindAddress: '127.0.0.1',
      healthEndpointPort: 10999,
      logLevel: 'info',
      maxConcurrentDispatches: 16,
      dispatchTimeout: 5_000,
      stateDir: '',
      integrationName: '',
      unregisterOnShutdown: false,
      shutdownTimeout: 20_000,
      outboxMaxAge: 86_400_000,
    };
    for (const [key, value] of Object.entries(expected)) {
      it(`${key} = ${JSON.stringify(value)}`, () => {
        expect((config as unknown as Record<string, unknown>)[key]).to.deep.equal(value);
      });
    }
    it('derives the polling, forwarding, control-plane and recipient URLs', () => {
      expect(config.pollingUrl.href).to.equal('https://keptn.example.com/api/controlPlane/v1/event/triggered');
      expect(config.forwardingUrl?.href).to.equal('https://keptn.example.com/api/v1/event');
      expect(config.controlPlaneUrl?.href).to.equal('https://keptn.example.com/api/controlPlane');
      expect(config.recipientUrl.href).to.equal('http://127.0.0.1:8080/');
    });
    it('is frozen', () => {
      expect(Object.isFrozen(config)).to.equal(true);
    });
    it('empty lists for the filters', () => {
      expect(config.projectFilter).to.deep.equal([]);
      expect(config.stageFilter).to.deep.equal([]);
      expect(config.serviceFilter).to.deep.equal([]);
    });
  });

  describe('lists', () => {
    it('takes HTTP mode without PUBSUB_TOPIC unless KEPTN_API_VERSION=0.8: the 1.x control plane owns the subscriptions', () => {
      const config = load({ KEPTN_API_ENDPOINT: BASE.KEPTN_API_ENDPOINT });
      expect(config.pubsubTopic).to.deep.equal([]);
      expect(config.keptnApiVersion).to.equal('auto');
      expect(config.heartbeatInterval).to.equal(10_000);
      expect(load({ KEPTN_API_ENDPOINT: BASE.KEPTN_API_ENDPOINT, KEPTN_API_VERSION: '1.X' }).keptnApiVersion).to.equal('1.x');
    });

    it('splits PUBSUB_TOPIC on commas, ignoring blanks around them and empty items', () => {
      const config = load({ ...BASE, PUBSUB_TOPIC: ' sh.keptn.event.a.triggered , sh.keptn.event.b.triggered,,' });
      expect(config.pubsubTopic).to.deep.equal(['sh.keptn.event.a.triggered', 'sh.keptn.event.b.triggered']);
    });
    it('splits the filters the same way', () => {
      const config = load({ ...BASE, PROJECT_FILTER: 'a, b', STAGE_FILTER: 'dev', SERVICE_FILTER: 'x,y,' });
      expect(config.projectFilter).to.deep.equal(['a', 'b']);
      expect(config.stageFilter).to.deep.equal(['dev']);
      expect(config.serviceFilter).to.deep.equal(['x', 'y']);
    });
  });

  describe('0.8.0 names are aliases', () => {
    it('HTTP_EVENT_ENDPOINT_AUTH_TOKEN is the token', () => {
      expect(load({ ...BASE, HTTP_EVENT_ENDPOINT_AUTH_TOKEN: 'old' }).keptnApiToken).to.equal('old');
    });
    it('KEPTN_API_TOKEN wins over its alias', () => {
      expect(load({ ...BASE, KEPTN_API_TOKEN: 'new', HTTP_EVENT_ENDPOINT_AUTH_TOKEN: 'old' }).keptnApiToken).to.equal('new');
    });
    it('CONNECTION_TYPE=http with HTTP_EVENT_POLLING_ENDPOINT and HTTP_EVENT_FORWARDING_ENDPOINT, no KEPTN_API_ENDPOINT', () => {
      const config = load({
        CONNECTION_TYPE: 'HTTP',
        HTTP_EVENT_POLLING_ENDPOINT: 'https://keptn.example.com/api/controlPlane/v1/event/triggered',
        HTTP_EVENT_FORWARDING_ENDPOINT: 'https://keptn.example.com/api/v1/event',
        PUBSUB_TOPIC: 'sh.keptn.event.test.triggered',
      });
      expect(config.connectionType).to.equal('http');
      expect(config.pollingUrl.href).to.equal('https://keptn.example.com/api/controlPlane/v1/event/triggered');
      expect(config.forwardingUrl?.href).to.equal('https://keptn.example.com/api/v1/event');
      expect(config.controlPlaneUrl).to.equal(undefined);
    });
    it('HTTP_EVENT_POLLING_ENDPOINT alone implies HTTP mode', () => {
      const config = load({
        HTTP_EVENT_POLLING_ENDPOINT: 'http://keptn.example.com/v1/event/triggered',
        HTTP_EVENT_FORWARDING_ENDPOINT: 'http://keptn.example.com/v1/event',
        PUBSUB_TOPIC: 'sh.keptn.event.test.triggered',
      });
      expect(config.connectionType).to.equal('http');
    });
    it('an HTTP_EVENT_POLLING_ENDPOINT without a path gets /v1/event/triggered, as in 0.8.0', () => {
      const config = load({ ...BASE, HTTP_EVENT_POLLING_ENDPOINT: 'http://shipyard-controller:8080' });
      expect(config.pollingUrl.href).to.equal('http://shipyard-controller:8080/v1/event/triggered');
    });
    it('the explicit polling and forwarding endpoints override the derived ones', () => {
      const config = load({
        ...BASE,
        HTTP_EVENT_POLLING_ENDPOINT: 'https://other.example.com/poll/v1/event/triggered',
        HTTP_EVENT_FORWARDING_ENDPOINT: 'https://other.example.com/events',
      });
      expect(config.pollingUrl.href).to.equal('https://other.example.com/poll/v1/event/triggered');
      expect(config.forwardingUrl?.href).to.equal('https://other.example.com/events');
    });
    it('RCV_PORT is API_PROXY_PORT', () => {
      expect(load({ ...BASE, RCV_PORT: '9000' }).apiProxyPort).to.equal(9000);
    });
  });

  describe('NATS (in-cluster) mode', () => {
    it('no Keptn API endpoint means NATS mode, with the reference’s in-cluster targets (spec §2.3, §2.4, §11)', () => {
      const config = load({ PUBSUB_TOPIC: 'sh.keptn.>' });
      expect(config.connectionType).to.equal('nats');
      expect(config.pubsubUrl).to.equal('nats://keptn-nats-cluster');
      expect(config.pubsubTopic).to.deep.equal(['sh.keptn.>']);
      expect(config.forwardingUrl).to.equal(undefined);
      expect(config.controlPlaneUrl?.href).to.equal('http://shipyard-controller:8080/');
      expect(config.pollingUrl.href).to.equal('http://shipyard-controller:8080/v1/event/triggered');
      expect(config.location).to.equal('control-plane');
    });
    it('CONNECTION_TYPE=nats selects it too, and LOCATION overrides the location', () => {
      const config = load({ CONNECTION_TYPE: 'nats', LOCATION: 'edge' });
      expect(config.connectionType).to.equal('nats');
      expect(config.location).to.equal('edge');
    });
    it('takes an empty PUBSUB_TOPIC (only the relay and proxy run, as the reference) and wildcard subjects', () => {
      expect(load({}).pubsubTopic).to.deep.equal([]);
      expect(load({ PUBSUB_TOPIC: 'sh.keptn.event.*.triggered, sh.keptn.>' }).pubsubTopic).to.deep.equal(['sh.keptn.event.*.triggered', 'sh.keptn.>']);
    });
    it('a bare host in PUBSUB_URL means nats://', () => {
      expect(load({ PUBSUB_URL: 'keptn-nats:4222' }).pubsubUrl).to.equal('nats://keptn-nats:4222');
      expect(load({ PUBSUB_URL: 'tls://keptn-nats:4222' }).pubsubUrl).to.equal('tls://keptn-nats:4222');
    });
    it('HTTP_EVENT_FORWARDING_ENDPOINT still sends relayed events over HTTP, as in 0.8.0', () => {
      expect(load({ CONNECTION_TYPE: 'nats', HTTP_EVENT_FORWARDING_ENDPOINT: 'http://api-service:8080/v1/event' }).forwardingUrl?.href)
        .to.equal('http://api-service:8080/v1/event');
    });
    const groups: Array<[string, Record<string, string>, string]> = [
      ['PUBSUB_GROUP when set', { PUBSUB_GROUP: 'g', K8S_DEPLOYMENT_NAME: 'helm-service', INTEGRATION_NAME: 'vm' }, 'g'],
      ['else K8S_DEPLOYMENT_NAME: the replicas of a deployment share the events', { K8S_DEPLOYMENT_NAME: 'helm-service', INTEGRATION_NAME: 'vm' }, 'helm-service'],
      ['else INTEGRATION_NAME', { INTEGRATION_NAME: 'vm' }, 'vm'],
      ['else none: every agent gets every event', {}, ''],
    ];
    for (const [name, env, group] of groups) {
      it(`queue group: ${name}`, () => {
        expect(load(env).pubsubGroup).to.equal(group);
      });
    }
    it('--pubsub-group overrides PUBSUB_GROUP', () => {
      expect(load({ PUBSUB_GROUP: 'a' }, { pubsubGroup: 'b' }).pubsubGroup).to.equal('b');
    });
  });

  describe('flags override environment variables', () => {
    it('a flag wins over its variable', () => {
      const config = load({ ...BASE, HTTP_POLLING_INTERVAL: '30' }, { httpPollingInterval: '2s' });
      expect(config.httpPollingInterval).to.equal(2_000);
    });
    it('a flag wins over an alias', () => {
      expect(load({ ...BASE, HTTP_EVENT_ENDPOINT_AUTH_TOKEN: 'env' }, { keptnApiToken: 'flag' }).keptnApiToken).to.equal('flag');
    });
    it('a bare boolean flag means true', () => {
      expect(load({ ...BASE, DISABLE_REGISTRATION: 'false' }, { disableRegistration: true }).disableRegistration).to.equal(true);
    });
    it('a boolean flag takes false', () => {
      expect(load(BASE, { httpSslVerify: 'false' }).httpSslVerify).to.equal(false);
    });
    it('VERSION’s flag is --integration-version', () => {
      expect(load({ ...BASE, VERSION: '1.0' }, { integrationVersion: '2.0' }).integrationVersion).to.equal('2.0');
      expect(load({ ...BASE, VERSION: '1.0' }).integrationVersion).to.equal('1.0');
    });
    it('the variable applies when the flag is absent', () => {
      expect(load({ ...BASE, API_PROXY_PORT: '9001' }, {}).apiProxyPort).to.equal(9001);
    });
  });

  describe('an empty variable counts as unset, so the default applies', () => {
    it('PUBSUB_RECIPIENT="" (the reference hung on shutdown, defect D12)', () => {
      expect(load({ ...BASE, PUBSUB_RECIPIENT: '' }).recipientUrl.href).to.equal('http://127.0.0.1:8080/');
    });
    it('API_PROXY_PORT="" (a parse error in the reference)', () => {
      expect(load({ ...BASE, API_PROXY_PORT: '' }).apiProxyPort).to.equal(8081);
    });
  });

  describe('durations', () => {
    for (const [text, ms] of [['10', 10_000], ['250ms', 250], ['2s', 2_000], ['1m30s', 90_000]] as const) {
      it(`HTTP_POLLING_INTERVAL=${text} → ${ms} ms`, () => {
        expect(load({ ...BASE, HTTP_POLLING_INTERVAL: text }).httpPollingInterval).to.equal(ms);
      });
    }
    it('REGISTRATION_INTERVAL takes bare seconds too (the reference warned and used 10s)', () => {
      expect(load({ ...BASE, REGISTRATION_INTERVAL: '30' }).registrationInterval).to.equal(30_000);
    });
    it('SHUTDOWN_TIMEOUT may be 0', () => {
      expect(load({ ...BASE, SHUTDOWN_TIMEOUT: '0' }).shutdownTimeout).to.equal(0);
    });
  });

  describe('URL derivation (reference: envconfig_test.go and §2.4)', () => {
    it('Test_getHTTPPollingEndpoint: https://my-keptn.com/api → …/api/controlPlane/v1/event/triggered', () => {
      expect(load({ ...BASE, KEPTN_API_ENDPOINT: 'https://my-keptn.com/api' }).pollingUrl.href)
        .to.equal('https://my-keptn.com/api/controlPlane/v1/event/triggered');
    });
    it('Test_getHTTPPollingEndpoint: no endpoint → the in-cluster shipyard-controller', () => {
      expect(inClusterPollingUrl().href).to.equal('http://shipyard-controller:8080/v1/event/triggered');
    });
    it('a trailing slash in KEPTN_API_ENDPOINT is not doubled in any derived URL (defect D22)', () => {
      const config = load({ ...BASE, KEPTN_API_ENDPOINT: 'https://keptn.example.com/api/' });
      expect(config.pollingUrl.href).to.equal('https://keptn.example.com/api/controlPlane/v1/event/triggered');
      expect(config.forwardingUrl?.href).to.equal('https://keptn.example.com/api/v1/event');
      expect(config.controlPlaneUrl?.href).to.equal('https://keptn.example.com/api/controlPlane');
    });
    it('an endpoint ending in /controlPlane does not get a second one for registration', () => {
      const config = load({ ...BASE, KEPTN_API_ENDPOINT: 'https://keptn.example.com/api/controlPlane' });
      expect(config.controlPlaneUrl?.href).to.equal('https://keptn.example.com/api/controlPlane');
    });
    it('an endpoint with a port and a path prefix', () => {
      const config = load({ ...BASE, KEPTN_API_ENDPOINT: 'http://external-api.com:8080/my/path/prefix/api' });
      expect(config.pollingUrl.href).to.equal('http://external-api.com:8080/my/path/prefix/api/controlPlane/v1/event/triggered');
    });
    it('Test_ValidateKeptnAPIEndpointURL: http:1.2.3.4.nip.io/some-path is accepted (read as http://1.2.3.4.nip.io/some-path)', () => {
      expect(load({ ...BASE, KEPTN_API_ENDPOINT: 'http:1.2.3.4.nip.io/some-path' }).forwardingUrl?.href)
        .to.equal('http://1.2.3.4.nip.io/some-path/v1/event');
    });
    it('Test_ValidateKeptnAPIEndpointURL: "d" is rejected', () => {
      expect(configError({ ...BASE, KEPTN_API_ENDPOINT: 'd' }).setting).to.equal('KEPTN_API_ENDPOINT');
    });

    describe('Test_getPubSubRecipientURL', () => {
      const cases: Array<[string, Record<string, string>, string]> = [
        ['recipient only', { PUBSUB_RECIPIENT: 'lighthouse-service' }, 'http://lighthouse-service:8080/'],
        ['path /event', { PUBSUB_RECIPIENT: 'lighthouse-service', PUBSUB_RECIPIENT_PATH: '/event' }, 'http://lighthouse-service:8080/event'],
        ['path event', { PUBSUB_RECIPIENT: 'lighthouse-service', PUBSUB_RECIPIENT_PATH: 'event' }, 'http://lighthouse-service:8080/event'],
        ['port 666', { PUBSUB_RECIPIENT: 'lighthouse-service', PUBSUB_RECIPIENT_PORT: '666' }, 'http://lighthouse-service:666/'],
        ['recipient unset, port 666', { PUBSUB_RECIPIENT_PORT: '666' }, 'http://127.0.0.1:666/'],
        ['https scheme', { PUBSUB_RECIPIENT: 'https://lighthouse-service' }, 'https://lighthouse-service:8080/'],
        ['a trailing slash after the host', { PUBSUB_RECIPIENT: 'http://lighthouse-service/' }, 'http://lighthouse-service:8080/'],
      ];
      for (const [name, env, url] of cases) {
        it(`${name} → ${url}`, () => {
          expect(load({ ...BASE, ...env }).recipientUrl.href).to.equal(url);
        });
      }
      it('a port inside PUBSUB_RECIPIENT is refused instead of concatenated', () => {
        expect(() => recipientUrl('http://svc:9000', 8080, '')).to.throw(ConfigError, /PUBSUB_RECIPIENT="http:\/\/svc:9000"/);
      });
    });
  });

  describe('bad values exit with one line naming the variable or flag and the value', () => {
    const cases: Array<[string, Record<string, string>, Flags, RegExp]> = [
      ['a bad URL', { ...BASE, KEPTN_API_ENDPOINT: 'keptn.example.com/api' }, {},
        /^KEPTN_API_ENDPOINT="keptn.example.com\/api": expected an absolute http\(s\) URL/],
      ['a non-http URL', { ...BASE, KEPTN_API_ENDPOINT: 'ftp://keptn.example.com' }, {}, /^KEPTN_API_ENDPOINT="ftp:\/\/keptn.example.com": expected/],
      ['an unparsable interval', { ...BASE, HTTP_POLLING_INTERVAL: 'ten' }, {},
        /^HTTP_POLLING_INTERVAL="ten": expected a positive number of seconds or a duration like 250ms, 2s or 1m30s$/],
      ['a negative interval', { ...BASE, HTTP_POLLING_INTERVAL: '-1' }, {}, /^HTTP_POLLING_INTERVAL="-1": expected/],
      ['a zero interval (the reference panicked)', { ...BASE, HTTP_POLLING_INTERVAL: '0' }, {}, /^HTTP_POLLING_INTERVAL="0": expected/],
      ['a bad interval flag', BASE, { httpPollingInterval: '1x' }, /^--http-polling-interval="1x": expected/],
      ['a bad registration interval', { ...BASE, REGISTRATION_INTERVAL: '0s' }, {}, /^REGISTRATION_INTERVAL="0s": expected/],
      ['a port out of range', { ...BASE, API_PROXY_PORT: '70000' }, {}, /^API_PROXY_PORT="70000": expected a port number from 0 to 65535/],
      ['a port that is not a number', { ...BASE, HEALTH_ENDPOINT_PORT: 'http' }, {}, /^HEALTH_ENDPOINT_PORT="http": expected a port number/],
      ['a negative port', { ...BASE, PUBSUB_RECIPIENT_PORT: '-80' }, {}, /^PUBSUB_RECIPIENT_PORT="-80": expected a port number from 1 to 65535/],
      ['recipient port 0', { ...BASE, PUBSUB_RECIPIENT_PORT: '0' }, {}, /^PUBSUB_RECIPIENT_PORT="0": expected/],
      ['a boolean that is neither true nor false', { ...BASE, HTTP_SSL_VERIFY: 'yes' }, {}, /^HTTP_SSL_VERIFY="yes": expected true or false$/],
      ['a boolean flag that is neither true nor false', BASE, { disableRegistration: '1' }, /^--disable-registration="1": expected true or false$/],
      ['HTTP mode for a 0.8 control plane without PUBSUB_TOPIC', { KEPTN_API_ENDPOINT: BASE.KEPTN_API_ENDPOINT, KEPTN_API_VERSION: '0.8' }, {},
        /^PUBSUB_TOPIC="": expected one or more comma-separated event types \(required in HTTP mode with KEPTN_API_VERSION=0.8\)$/],
      ['an unknown control plane generation', { ...BASE, KEPTN_API_VERSION: '2.0' }, {}, /^KEPTN_API_VERSION="2.0": expected one of auto, 0.8, 1.x$/],
      ['KEPTN_API_VERSION=1.x without registration', { ...BASE, KEPTN_API_VERSION: '1.x', DISABLE_REGISTRATION: 'true' }, {},
        /^KEPTN_API_VERSION="1.x": expected 0.8 or auto here: a 1.x control plane sends the subscriptions to registered agents/],
      ['a zero heartbeat interval', { ...BASE, HEARTBEAT_INTERVAL: '0' }, {}, /^HEARTBEAT_INTERVAL="0": expected a positive number/],
      ['a NATS wildcard in HTTP mode', { ...BASE, PUBSUB_TOPIC: 'sh.keptn.>' }, {}, /^PUBSUB_TOPIC="sh.keptn.>": expected exact event types/],
      ['an unknown log level', { ...BASE, LOG_LEVEL: 'verbose' }, {}, /^LOG_LEVEL="verbose": expected one of error, warn, info, debug$/],
      ['an unknown connection type', { ...BASE, CONNECTION_TYPE: 'grpc' }, {}, /^CONNECTION_TYPE="grpc": expected one of http, nats$/],
      ['zero concurrent dispatches', { ...BASE, MAX_CONCURRENT_DISPATCHES: '0' }, {}, /^MAX_CONCURRENT_DISPATCHES="0": expected a whole number from 1/],
      ['a path without a leading slash', { ...BASE, EVENT_FORWARDING_PATH: 'event' }, {}, /^EVENT_FORWARDING_PATH="event": expected a path starting with \/$/],
      ['the same path for relay and proxy', { ...BASE, API_PROXY_PATH: '/event' }, {}, /^EVENT_FORWARDING_PATH="\/event": expected a path different from API_PROXY_PATH$/],
      ['CONNECTION_TYPE=nats with a Keptn API endpoint', { ...BASE, CONNECTION_TYPE: 'nats' }, {},
        /^KEPTN_API_ENDPOINT="https:\/\/keptn.example.com\/api": expected no value in NATS mode/],
      ['a PUBSUB_URL that is not a NATS URL', { PUBSUB_URL: 'http://keptn-nats:4222' }, {}, /^PUBSUB_URL="http:\/\/keptn-nats:4222": expected a NATS server URL/],
      ['a PUBSUB_URL with a path', { PUBSUB_URL: 'nats://keptn-nats/x' }, {}, /^PUBSUB_URL="nats:\/\/keptn-nats\/x": expected a NATS server URL/],
      ['> not as the last token in NATS mode', { PUBSUB_TOPIC: 'sh.>.triggered' }, {}, /^PUBSUB_TOPIC="sh.>.triggered": expected NATS subjects/],
      ['an empty token in NATS mode', { PUBSUB_TOPIC: 'sh..keptn' }, {}, /^PUBSUB_TOPIC="sh..keptn": expected NATS subjects/],
      ['a wildcard inside a token in NATS mode', { PUBSUB_TOPIC: 'sh.keptn.event.deploy*' }, {}, /^PUBSUB_TOPIC="sh.keptn.event.deploy\*": expected NATS subjects/],
      ['CONNECTION_TYPE=http without any endpoint', { CONNECTION_TYPE: 'http', PUBSUB_TOPIC: 'sh.keptn.event.test.triggered' }, {},
        /^KEPTN_API_ENDPOINT="": expected an absolute http\(s\) URL/],
      ['a polling endpoint without a forwarding endpoint', {
        HTTP_EVENT_POLLING_ENDPOINT: 'http://keptn.example.com/v1/event/triggered', PUBSUB_TOPIC: 'sh.keptn.event.test.triggered',
      }, {}, /^HTTP_EVENT_FORWARDING_ENDPOINT="": expected an absolute http\(s\) URL: without KEPTN_API_ENDPOINT/],
      ['a recipient with a path', { ...BASE, PUBSUB_RECIPIENT: 'svc/event' }, {}, /^PUBSUB_RECIPIENT="svc\/event": expected a host name/],
      ['a bad value given through an alias names the alias', { ...BASE, RCV_PORT: 'x' }, {}, /^RCV_PORT="x": expected/],
    ];
    for (const [name, env, flags, message] of cases) {
      it(name, () => {
        const error = configError(env, flags);
        expect(error.message).to.match(message);
        expect(error.message).not.to.include('\n');
      });
    }
  });

  it('the token is the secret to redact', () => {
    expect(secretsOf(load({ ...BASE, KEPTN_API_TOKEN: 's3cr3t' }))).to.deep.equal(['s3cr3t']);
    expect(secretsOf(load(BASE))).to.deep.equal([]);
  });

  it('so are the credentials in PUBSUB_URL', () => {
    expect(secretsOf(load({ PUBSUB_URL: 'nats://distributor:n4ts-s3cret@keptn-nats:4222' }))).to.deep.equal(['n4ts-s3cret']);
    expect(secretsOf(load({ PUBSUB_URL: 'nats://t0ken@keptn-nats' }))).to.deep.equal(['t0ken']);
  });

  it('a NATS password with a raw @ is redacted as written, not only as URL encodes it', () => {
    expect(secretsOf(load({ PUBSUB_URL: 'nats://keptn:p@ss@127.0.0.1:4222' }))).to.include.members(['p%40ss', 'p@ss']);
  });

  it('a plain NATS user name is not a secret: redacting "keptn" would blot out every log line', () => {
    expect(secretsOf(load({ PUBSUB_URL: 'nats://keptn:pw@keptn-nats' }))).to.not.include('keptn');
  });

  it('a Keptn URL with user:password@ is refused: it is logged, and the token has a setting of its own', () => {
    for (const name of ['KEPTN_API_ENDPOINT', 'HTTP_EVENT_FORWARDING_ENDPOINT', 'OAUTH_TOKEN_URL']) {
      const error = configError({ ...BASE, [name]: 'https://user:s3cr3t@keptn.example.com/api' });
      expect(error.message).to.match(new RegExp(`^${name}="https://\\*\\*\\*@keptn.example.com/api": expected a URL without user:password@`));
      expect(error.message).to.not.include('s3cr3t');
    }
  });

  describe('OAuth, timeout, payload limit and outgoing proxies', () => {
    const OAUTH = { OAUTH_CLIENT_ID: 'id', OAUTH_CLIENT_SECRET: 'oauth-s3cret', OAUTH_SCOPES: 'a, b', OAUTH_TOKEN_URL: 'https://idp.example.com/token' };

    it('defaults: no OAuth, 30 s timeout, 1024 KiB bodies (the contract\'s 1 MiB, not the reference\'s 64), no proxy', () => {
      const config = load(BASE);
      expect(config).to.include({ oauth: undefined, apiProxyHttpTimeout: 30_000, apiProxyMaxPayloadBytesKb: 1024, httpsProxy: undefined, httpProxy: undefined });
      expect(config.proxyBypass).to.deep.equal([]);
    });

    it('API_PROXY_HTTP_TIMEOUT takes bare seconds, as the reference, or a duration', () => {
      expect(load({ ...BASE, API_PROXY_HTTP_TIMEOUT: '5' }).apiProxyHttpTimeout).to.equal(5_000);
      expect(load({ ...BASE, API_PROXY_HTTP_TIMEOUT: '1m30s' }).apiProxyHttpTimeout).to.equal(90_000);
      expect(configError({ ...BASE, API_PROXY_HTTP_TIMEOUT: '0' }).message).to.match(/^API_PROXY_HTTP_TIMEOUT="0": expected a positive number of seconds/);
    });

    it('API_PROXY_MAX_PAYLOAD_BYTES_KB is a whole number of KiB', () => {
      expect(load({ ...BASE, API_PROXY_MAX_PAYLOAD_BYTES_KB: '64' }).apiProxyMaxPayloadBytesKb).to.equal(64);
      expect(configError({ ...BASE, API_PROXY_MAX_PAYLOAD_BYTES_KB: '0' }).message).to.match(/^API_PROXY_MAX_PAYLOAD_BYTES_KB="0": expected a whole number of KiB/);
    });

    it('all OAuth settings: a client with a token URL, or a discovery URL; the token URL wins', () => {
      expect(load({ ...BASE, ...OAUTH }).oauth).to.deep.equal({
        clientId: 'id', clientSecret: 'oauth-s3cret', scopes: ['a', 'b'], source: { tokenUrl: new URL('https://idp.example.com/token') },
      });
      const discovery = 'https://idp.example.com/.well-known/openid-configuration';
      expect(load({ ...BASE, ...OAUTH, OAUTH_TOKEN_URL: '', OAUTH_DISCOVERY: discovery }).oauth?.source).to.deep.equal({ discoveryUrl: new URL(discovery) });
      expect(load({ ...BASE, ...OAUTH, OAUTH_DISCOVERY: discovery }).oauth?.source).to.have.property('tokenUrl');
    });

    const partial: Array<[string, Record<string, string>, RegExp]> = [
      ['no secret', { ...OAUTH, OAUTH_CLIENT_SECRET: '' }, /^OAUTH_CLIENT_SECRET="": expected a value: OAUTH_CLIENT_ID, OAUTH_SCOPES, OAUTH_TOKEN_URL are set, and OAuth also needs OAUTH_CLIENT_SECRET$/],
      ['no scopes', { ...OAUTH, OAUTH_SCOPES: ' , ' }, /^OAUTH_SCOPES="": expected .* also needs OAUTH_SCOPES$/],
      ['no URL', { ...OAUTH, OAUTH_TOKEN_URL: '' }, /^OAUTH_TOKEN_URL="": expected .* also needs OAUTH_TOKEN_URL or OAUTH_DISCOVERY$/],
      ['a discovery URL alone', { OAUTH_DISCOVERY: 'https://idp.example.com/d' },
        /^OAUTH_CLIENT_ID="": expected a value: OAUTH_DISCOVERY is set, and OAuth also needs OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET, OAUTH_SCOPES$/],
    ];
    for (const [name, env, message] of partial) {
      it(`a partial OAuth set is an error naming what is missing: ${name}`, () => {
        expect(configError({ ...BASE, ...env }).message).to.match(message);
      });
    }

    it('proxies: URLs, a bare host:port meaning http://, and the lowercase names', () => {
      const config = load({ ...BASE, HTTPS_PROXY: 'proxy.corp:3128', http_proxy: 'http://u:p@proxy.corp:8080', no_proxy: 'localhost, .svc' });
      expect(config.httpsProxy?.href).to.equal('http://proxy.corp:3128/');
      expect(config.httpProxy?.href).to.equal('http://u:p@proxy.corp:8080/');
      expect(config.proxyBypass).to.deep.equal(['localhost', '.svc']);
      expect(load(BASE, { proxyBypass: '*' }).proxyBypass).to.deep.equal(['*']);
    });

    it('a bad URL with credentials is shown without them', () => {
      expect(configError({ ...BASE, HTTPS_PROXY: 'ftp://corp:pr0xy-pass@proxy.corp:21' }).message).to.match(/^HTTPS_PROXY="ftp:\/\/\*\*\*@proxy.corp:21": expected a proxy URL/);
      expect(configError({ ...BASE, HTTP_PROXY: 'corp:pr0xy-pass@proxy.corp:3128/x' }).message).to.not.include('pr0xy-pass');
      expect(configError({ ...BASE, HTTP_PROXY: 'http://u:p@ss@proxy.corp:3128x' }).message).to.match(/^HTTP_PROXY="http:\/\/\*\*\*@proxy.corp:3128x"/);
    });

    it('a proxy URL that is not one is an error', () => {
      expect(configError({ ...BASE, HTTPS_PROXY: 'socks5://proxy.corp:1080' }).message).to.match(/^HTTPS_PROXY="socks5:\/\/proxy.corp:1080": expected a proxy URL/);
      expect(configError({ ...BASE, HTTP_PROXY: 'http://proxy.corp:3128/path' }).message).to.match(/^HTTP_PROXY=.*expected a proxy URL/);
    });

    it('the OAuth client secret and the proxies\' user and password are secrets to redact (as written and decoded)', () => {
      const secrets = secretsOf(load({ ...BASE, ...OAUTH, HTTPS_PROXY: 'http://corp%20user:p%40ss@proxy.corp:3128' }));
      expect(secrets).to.include.members(['oauth-s3cret', 'corp user', 'p@ss', 'corp%20user', 'p%40ss']);
    });
  });
});
