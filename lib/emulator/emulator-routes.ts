/**
 * Routes that are not Keptn's but help to test against the emulator:
 *
 * - echo routes under each proxied prefix, answering exactly what arrived
 *   (method, raw path, raw query, headers, body), for the agent's API proxy;
 * - `/emulator/…`: inspection of the emulator's memory and `POST
 *   /emulator/trigger` to start a task, which the `trigger` command uses.
 *   They need no token: they stand for the Keptn bridge and CLI, not the API.
 */
import { checkTriggerRequest } from './event-model.ts';
import { json, keptnError, type Reply } from './json-http.ts';
import { optional, queryValue, type RouteContext } from './keptn-routes.ts';
import type { Route, RouteRequest } from './router.ts';

export function emulatorRoutes(context: RouteContext): Route[] {
  const echoes = ['/controlPlane/v1/echo/*', '/configuration-service/echo/*', '/mongodb-datastore/echo/*'].map((pattern): Route => (
    { method: '*', pattern, key: 'proxy', auth: true, body: 'text', handle: echo }
  ));
  return [
    ...echoes,
    { method: 'GET', pattern: '/emulator/events', key: 'inspect', auth: false, body: 'none', handle: (request) => receivedEvents(context, request) },
    { method: 'GET', pattern: '/emulator/triggered', key: 'inspect', auth: false, body: 'none', handle: (request) => openTriggered(context, request) },
    { method: 'GET', pattern: '/emulator/registrations', key: 'inspect', auth: false, body: 'none', handle: () => json(200, { registrations: context.state.integrations() }) },
    { method: 'GET', pattern: '/emulator/logs', key: 'inspect', auth: false, body: 'none', handle: () => json(200, { logs: context.state.logs() }) },
    { method: 'GET', pattern: '/emulator/resources', key: 'inspect', auth: false, body: 'none', handle: () => json(200, { resources: context.state.resources() }) },
    { method: 'POST', pattern: '/emulator/trigger', key: 'trigger', auth: false, body: 'json', handle: (request) => trigger(context, request) },
  ];
}

/** What arrived, as it arrived: the proxy tests compare it with what the recipient sent. */
function echo(request: RouteRequest): Reply {
  return json(200, { method: request.method, path: request.rawPath, query: request.rawQuery, headers: request.headers, body: request.text });
}

/** `GET /emulator/events?type=&keptnContext=`: accepted posts to `/v1/event`, in arrival order, with what became of them. */
function receivedEvents({ state }: RouteContext, request: RouteRequest): Reply {
  const events = state.received({
    ...optional('type', queryValue(request.query, 'type')),
    ...optional('keptnContext', queryValue(request.query, 'keptnContext')),
  });
  return json(200, { events });
}

/** `GET /emulator/triggered?type=`: the open `.triggered` events, in poll order. */
function openTriggered({ state }: RouteContext, request: RouteRequest): Reply {
  return json(200, { events: state.findOpen(optional('type', queryValue(request.query, 'type'))) });
}

/** `POST /emulator/trigger` with `{type, project, stage, service, data?, source?}`: 201 and the new `.triggered` event. */
function trigger({ trigger: startTask }: RouteContext, request: RouteRequest): Reply {
  const check = checkTriggerRequest(request.body);
  if (!check.ok) return keptnError(400, check.message);
  try {
    return json(201, startTask(check.request));
  } catch (error) {
    // A given id that is open already.
    return keptnError(409, error instanceof Error ? error.message : String(error));
  }
}
