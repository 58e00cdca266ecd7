/**
 * The Uniform of a Keptn 1.x control plane (0.9 – 1.4.5), as the emulator's
 * `--api-version 1.x` serves it. Followed: keptn/keptn 1.4.5
 * shipyard-controller `handler/uniformintegrationhandler.go` and go-utils
 * `models.Integration` / `models.EventSubscription`:
 *
 * - `POST …/uniform/registration`: an integration with the same name and
 *   namespace is kept as it is (only `lastseen` changes), so the subscriptions
 *   users edited survive an agent's restart: 200 with its id. A new one gets the
 *   id SHA-1(`<name>-<namespace>-<metadata.hostname>`) and a UUID per
 *   subscription: 201.
 * - `PUT …/registration/<id>/ping`: 200 with the integration, 404 for an unknown id.
 * - `…/registration/<id>/subscription[/<subid>]`: create (POST, 201 `{id}`),
 *   update or create (PUT, 201 `{id}`), delete (DELETE, 200 `{}`), read (GET).
 *   A subscription needs an `event`; services need stages (the real validator).
 */
import { createHash, randomUUID } from 'node:crypto';
import { isRecord } from '../json-object.ts';
import { json, keptnError, type Reply } from './json-http.ts';
import type { RouteContext } from './keptn-routes.ts';
import type { Route, RouteRequest } from './router.ts';
import type { Integration, Subscription } from './state.ts';

/** What the emulator's routes and commands accept as a subscription (no id). */
type SubscriptionCheck = { readonly ok: true; readonly subscription: Omit<Subscription, 'id'> } | { readonly ok: false; readonly message: string };

export function uniform1xRoutes(context: RouteContext): Route[] {
  const base = '/controlPlane/v1/uniform/registration';
  return [
    { method: 'POST', pattern: base, key: 'register', auth: true, body: 'json', handle: (request) => register(context, request) },
    { method: 'PUT', pattern: `${base}/:id/ping`, key: 'ping', auth: true, body: 'none', handle: (request) => ping(context, request) },
    { method: 'GET', pattern: `${base}/:id/subscription`, key: 'subscriptions', auth: true, body: 'none', handle: (request) => listSubscriptions(context, request) },
    { method: 'POST', pattern: `${base}/:id/subscription`, key: 'subscriptions', auth: true, body: 'json', handle: (request) => createSubscription(context, request) },
    { method: 'GET', pattern: `${base}/:id/subscription/:subscription`, key: 'subscriptions', auth: true, body: 'none', handle: (request) => getSubscription(context, request) },
    { method: 'PUT', pattern: `${base}/:id/subscription/:subscription`, key: 'subscriptions', auth: true, body: 'json', handle: (request) => updateSubscription(context, request) },
    { method: 'DELETE', pattern: `${base}/:id/subscription/:subscription`, key: 'subscriptions', auth: true, body: 'none', handle: (request) => deleteSubscription(context, request) },
  ];
}

/** go-utils `IntegrationID.Hash` from 0.9 on: hex SHA-1 of `<name>-<namespace>-<nodename>`. */
export function integrationId1x(name: string, namespace: string, nodeName: string): string {
  return createHash('sha1').update(`${name}-${namespace}-${nodeName}`).digest('hex');
}

/** Checks a subscription body (`{event, filter: {projects, stages, services}}`). */
export function checkSubscription(body: unknown): SubscriptionCheck {
  if (!isRecord(body)) return { ok: false, message: 'the body must be a JSON object (an event subscription)' };
  if (typeof body.event !== 'string' || body.event === '') return { ok: false, message: 'the event must be specified when setting up a subscription' };
  const filter = isRecord(body.filter) ? body.filter : {};
  const lists: Record<'projects' | 'stages' | 'services', string[]> = { projects: [], stages: [], services: [] };
  for (const field of ['projects', 'stages', 'services'] as const) {
    const value = filter[field];
    if (value === undefined || value === null) continue;
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
      return { ok: false, message: `filter.${field} must be an array of strings` };
    }
    lists[field] = value as string[];
  }
  if (lists.services.length > 0 && lists.stages.length === 0) {
    return { ok: false, message: 'at least one stage must be specified when setting up a subscription filter for a service' };
  }
  return { ok: true, subscription: { event: body.event, filter: lists } };
}

function register({ state, now, observer }: RouteContext, request: RouteRequest): Reply {
  const body = request.body;
  if (!isRecord(body)) return keptnError(400, 'the body must be a JSON object (a uniform integration)');
  const metadata = isRecord(body.metadata) ? body.metadata : {};
  const kubernetes = isRecord(metadata.kubernetesmetadata) ? metadata.kubernetesmetadata : {};
  const name = typeof body.name === 'string' ? body.name : '';
  const namespace = typeof kubernetes.namespace === 'string' ? kubernetes.namespace : '';
  const hostname = typeof metadata.hostname === 'string' ? metadata.hostname : '';
  if (name === '' || namespace === '') return keptnError(400, "incomplete integration ID. At least 'name' and 'namespace' must be set");
  const lastseen = now().toISOString();
  const existing = state.integrations().find((integration) => integration.name === name && kubernetes.namespace === namespaceOf(integration));
  if (existing !== undefined) {
    const kept = { ...existing, metadata: { ...existing.metadata, lastseen } };
    state.register(kept);
    observer.registered(kept, false);
    return json(200, { id: existing.id });
  }
  const subscriptions: Subscription[] = [];
  for (const entry of Array.isArray(body.subscriptions) ? body.subscriptions : []) {
    const check = checkSubscription(entry);
    if (!check.ok) return keptnError(400, check.message);
    subscriptions.push({ id: randomUUID(), ...check.subscription });
  }
  const integration: Integration = {
    id: integrationId1x(name, namespace, hostname),
    name,
    metadata: { ...metadata, lastseen },
    subscription: isRecord(body.subscription) ? body.subscription : {},
    subscriptions,
  };
  observer.registered(integration, state.register(integration));
  return json(201, { id: integration.id });
}

function ping({ state, now }: RouteContext, request: RouteRequest): Reply {
  const integration = state.integration(request.params.id ?? '');
  if (integration === undefined) return keptnError(404, 'uniform integration not found');
  const seen = { ...integration, metadata: { ...integration.metadata, lastseen: now().toISOString() } };
  state.register(seen);
  return json(200, { ...seen, subscriptions: seen.subscriptions ?? [] });
}

function listSubscriptions({ state }: RouteContext, request: RouteRequest): Reply {
  const integration = state.integration(request.params.id ?? '');
  if (integration === undefined) return keptnError(404, 'uniform integration not found');
  return json(200, integration.subscriptions ?? []);
}

function getSubscription({ state }: RouteContext, request: RouteRequest): Reply {
  const found = state.integration(request.params.id ?? '')?.subscriptions?.find((subscription) => subscription.id === request.params.subscription);
  return found === undefined ? keptnError(404, 'subscription not found') : json(200, found);
}

function createSubscription(context: RouteContext, request: RouteRequest): Reply {
  return upsert(context, request.params.id ?? '', randomUUID(), request.body, 'added');
}

function updateSubscription(context: RouteContext, request: RouteRequest): Reply {
  return upsert(context, request.params.id ?? '', request.params.subscription ?? '', request.body, 'changed');
}

function upsert({ state, observer }: RouteContext, integrationId: string, subscriptionId: string, body: unknown, change: 'added' | 'changed'): Reply {
  const check = checkSubscription(body);
  if (!check.ok) return keptnError(400, check.message);
  const integration = state.integration(integrationId);
  if (integration === undefined) return keptnError(404, 'uniform integration not found');
  const subscription: Subscription = { id: subscriptionId, ...check.subscription };
  const others = (integration.subscriptions ?? []).filter((existing) => existing.id !== subscriptionId);
  const known = others.length !== (integration.subscriptions ?? []).length;
  state.register({ ...integration, subscriptions: [...others, subscription] });
  observer.subscriptionChanged(integration, subscription, known ? 'changed' : change);
  return json(201, { id: subscriptionId });
}

function deleteSubscription({ state, observer }: RouteContext, request: RouteRequest): Reply {
  const integration = state.integration(request.params.id ?? '');
  if (integration === undefined) return keptnError(404, 'uniform integration not found');
  const removed = integration.subscriptions?.find((subscription) => subscription.id === request.params.subscription);
  // The real handler answers 200 for an unknown subscription too (Mongo's delete of nothing succeeds).
  if (removed === undefined) return json(200, {});
  state.register({ ...integration, subscriptions: (integration.subscriptions ?? []).filter((subscription) => subscription !== removed) });
  observer.subscriptionChanged(integration, removed, 'removed');
  return json(200, {});
}

function namespaceOf(integration: Integration): unknown {
  const kubernetes = integration.metadata.kubernetesmetadata;
  return isRecord(kubernetes) ? kubernetes.namespace : undefined;
}
