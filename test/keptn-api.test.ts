import { createServer } from 'node:net';
import { expect } from 'chai';
import nock from 'nock';
import { KeptnApi, describeFailure, keptnApiOptions } from '../lib/keptn-api.ts';
import { loadConfig } from '../lib/config.ts';
import { keptnApiFailure } from './helpers/keptn-api-failure.ts';
import { useNock } from './helpers/nock-scope.ts';

const ENDPOINT = 'https://keptn.example.com';
const TOKEN = 'api-token-123';
const TYPE = 'sh.keptn.event.deployment.triggered';
const POLL_PATH = `/api/controlPlane/v1/event/triggered/${TYPE}`;

function api(overrides: Record<string, string> = {}): KeptnApi {
  const config = loadConfig({ env: { KEPTN_API_ENDPOINT: `${ENDPOINT}/api`, KEPTN_API_TOKEN: TOKEN, PUBSUB_TOPIC: TYPE, ...overrides } });
  return new KeptnApi(keptnApiOptions(config, 2_000));
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('keptn-api', () => {
  useNock();
  afterEach(() => {
    const done = nock.isDone();
    nock.cleanAll();
    expect(done, 'every expected request was made').to.equal(true);
  });

  describe('triggeredEventsPage', () => {
    it('GETs the polling URL with x-token, pageSize and nextPageKey', async () => {
      nock(ENDPOINT, { reqheaders: { 'x-token': TOKEN } })
        .get(POLL_PATH).query({ pageSize: '100', nextPageKey: '20' })
        .reply(200, { events: [{ id: 'a' }], nextPageKey: '40', totalCount: 41 });
      const page = await api().triggeredEventsPage(TYPE, { pageSize: 100, nextPageKey: '20' });
      expect(page).to.deep.equal({ events: [{ id: 'a' }], nextPageKey: '40', totalCount: 41 });
    });

    it('"0", "" and an absent nextPageKey all mean the last page', async () => {
      for (const next of ['0', '', undefined]) {
        nock(ENDPOINT).get(POLL_PATH).reply(200, { events: [], ...(next !== undefined && { nextPageKey: next }) });
        expect((await api().triggeredEventsPage(TYPE)).nextPageKey).to.equal(undefined);
      }
    });

    it('sends no x-token without a token', async () => {
      nock(ENDPOINT, { badheaders: ['x-token'] }).get(POLL_PATH).reply(200, { events: [] });
      await api({ KEPTN_API_TOKEN: '' }).triggeredEventsPage(TYPE);
    });

    it('turns Keptn’s {code, message} error body into the message, with the status', async () => {
      nock(ENDPOINT).get(POLL_PATH).reply(500, { code: 500, message: 'no matching event found' });
      const error = await keptnApiFailure(api().triggeredEventsPage(TYPE));
      expect(error.toJSON()).to.deep.equal({ status: 500, message: '500: no matching event found' });
      expect(error.kind).to.equal('status');
    });

    it('a JSON error body without message (the reference panicked, D8)', async () => {
      nock(ENDPOINT).get(POLL_PATH).reply(502, { error: 'bad gateway' });
      const error = await keptnApiFailure(api().triggeredEventsPage(TYPE));
      expect(error.status).to.equal(502);
    });

    it('an HTML error page from the gateway becomes short text', async () => {
      nock(ENDPOINT).get(POLL_PATH).reply(401, '<html><head><title>401 Authorization Required</title></head><body><h1>401</h1></body></html>');
      const error = await keptnApiFailure(api().triggeredEventsPage(TYPE));
      expect(error.message).to.equal('401: 401 Authorization Required 401');
    });

    it('a 200 without an events list is an error, not an empty list', async () => {
      nock(ENDPOINT).get(POLL_PATH).reply(200, { something: 'else' });
      expect((await keptnApiFailure(api().triggeredEventsPage(TYPE))).message).to.match(/without an "events" list/);
    });

    it('Retry-After is kept', async () => {
      nock(ENDPOINT).get(POLL_PATH).reply(429, 'slow down', { 'retry-after': '3' });
      expect((await keptnApiFailure(api().triggeredEventsPage(TYPE))).retryAfterMs).to.equal(3_000);
    });

    it('a refused connection sent nothing: "unreachable", and the error carries no request options', async () => {
      const port = await closedPort();
      const error = await keptnApiFailure(api({ KEPTN_API_ENDPOINT: `http://127.0.0.1:${port}/api` }).triggeredEventsPage(TYPE));
      expect(error.kind).to.equal('unreachable');
      expect(error.code).to.equal('ECONNREFUSED');
      expect(JSON.stringify(error)).not.to.include(TOKEN);
      expect(Object.keys(error)).not.to.include('options');
    });

    it('a timeout is an error with code ETIMEDOUT', async () => {
      nock(ENDPOINT).get(POLL_PATH).delay(3_000).reply(200, { events: [] });
      const error = await keptnApiFailure(api().triggeredEventsPage(TYPE));
      expect(error.code).to.equal('ETIMEDOUT');
    });

    it('percent-encodes an odd type as one path segment', async () => {
      nock(ENDPOINT).get('/api/controlPlane/v1/event/triggered/a%2Fb').reply(200, { events: [] });
      await api().triggeredEventsPage('a/b');
    });
  });

  describe('triggeredEventsPage with a project (issue 4)', () => {
    it('sends the project as the server’s `project` query parameter', async () => {
      nock(ENDPOINT, { reqheaders: { 'x-token': TOKEN } })
        .get(POLL_PATH).query({ pageSize: '1000', project: 'sockshop' })
        .reply(200, { events: [], nextPageKey: '0' });
      const page = await api().triggeredEventsPage(TYPE, { pageSize: 1000, project: 'sockshop' });
      expect(page.events).to.deep.equal([]);
    });
  });

  it('NATS mode: registration and logs go to the in-cluster shipyard-controller, without the token (spec §11.3)', async () => {
    const options = keptnApiOptions(loadConfig({ env: { KEPTN_API_TOKEN: TOKEN } }));
    expect(options.controlPlaneUrl?.href).to.equal('http://shipyard-controller:8080/');
    expect(await options.credentials.headers()).to.deep.equal({});
  });

  describe('registration and logs', () => {
    it('register returns the id', async () => {
      nock(ENDPOINT, { reqheaders: { 'x-token': TOKEN } })
        .post('/api/controlPlane/v1/uniform/registration', { name: 'svc' })
        .reply(200, { id: 'abcde' });
      expect(await api().register({ name: 'svc' })).to.equal('abcde');
    });

    it('an empty 2xx answer to register is an error (as the reference)', async () => {
      nock(ENDPOINT).post('/api/controlPlane/v1/uniform/registration').reply(200, '');
      await keptnApiFailure(api().register({ name: 'svc' }));
    });

    it('unregister DELETEs the id', async () => {
      nock(ENDPOINT).delete('/api/controlPlane/v1/uniform/registration/abcde').reply(200, {});
      await api().unregister('abcde');
    });

    it('postLogs wraps the entries in {logs}', async () => {
      nock(ENDPOINT).post('/api/controlPlane/v1/log', { logs: [{ message: 'm' }] }).reply(200, {});
      await api().postLogs([{ message: 'm' }]);
    });

    it('eventsByContext queries the datastore', async () => {
      nock(ENDPOINT).get('/api/mongodb-datastore/event')
        .query({ keptnContext: 'ctx', type: 'sh.keptn.event.test.started', pageSize: '100' })
        .reply(200, { events: [{ id: 'x' }], nextPageKey: '0' });
      expect(await api().eventsByContext('ctx', 'sh.keptn.event.test.started')).to.deep.equal([{ id: 'x' }]);
    });
  });

  describe('describeFailure', () => {
    it('keeps a KeptnApiError’s safe summary and only the message of anything else', async () => {
      nock(ENDPOINT).post('/api/controlPlane/v1/log').reply(503, { code: 503, message: 'down' });
      const error = await keptnApiFailure(api().postLogs([]));
      expect(describeFailure(error)).to.deep.equal({ status: 503, message: '503: down' });
      const other = Object.assign(new Error('boom'), { options: { headers: { 'x-token': TOKEN } } });
      expect(describeFailure(other)).to.deep.equal({ message: 'boom' });
      expect(describeFailure('text')).to.deep.equal({ message: 'text' });
    });
  });
});
