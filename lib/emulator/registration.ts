/**
 * Uniform registration as the 0.8.7 shipyard-controller handles it (spec
 * §9.2–9.3): the id is not chosen by the client but derived from name,
 * namespace and the three raw filter strings, so re-registering gives the
 * same id and changing a filter gives a new one.
 */
import { createHash } from 'node:crypto';
import { isRecord } from '../json-object.ts';
import type { Integration } from './state.ts';

export type RegistrationCheck = { readonly ok: true; readonly integration: Integration } | { readonly ok: false; readonly message: string };

/** go-utils `IntegrationID.Hash`: hex SHA-1 of `<name>-<namespace>-<project>-<stage>-<service>`. */
export function integrationId(name: string, namespace: string, filter: { project: string; stage: string; service: string }): string {
  return createHash('sha1').update(`${name}-${namespace}-${filter.project}-${filter.stage}-${filter.service}`).digest('hex');
}

/**
 * Checks a registration body and returns the integration to store: the
 * client's id replaced by the derived one, `metadata.lastseen` set to `now`,
 * fields outside Keptn's model dropped (as Go's decoding drops them).
 */
export function checkRegistration(body: unknown, now: Date): RegistrationCheck {
  if (!isRecord(body)) return { ok: false, message: 'the body must be a JSON object (a uniform integration)' };
  const metadata = isRecord(body.metadata) ? body.metadata : {};
  const kubernetes = isRecord(metadata.kubernetesmetadata) ? metadata.kubernetesmetadata : {};
  const subscription = isRecord(body.subscription) ? body.subscription : {};
  const filter = isRecord(subscription.filter) ? subscription.filter : {};
  for (const field of ['project', 'stage', 'service'] as const) {
    if (filter[field] !== undefined && typeof filter[field] !== 'string') {
      return { ok: false, message: `subscription.filter.${field} must be a string (the 0.8.x registration format)` };
    }
  }
  const name = typeof body.name === 'string' ? body.name : '';
  const namespace = typeof kubernetes.namespace === 'string' ? kubernetes.namespace : '';
  if (name === '' || namespace === '') {
    return { ok: false, message: "incomplete integration ID. At least 'name' and 'namespace' must be set" };
  }
  const text = (value: unknown): string => (typeof value === 'string' ? value : '');
  const id = integrationId(name, namespace, { project: text(filter.project), stage: text(filter.stage), service: text(filter.service) });
  return {
    ok: true,
    integration: { id, name, metadata: { ...metadata, lastseen: now.toISOString() }, subscription },
  };
}

/**
 * The query of `GET …/uniform/registration`: `id`, `name`, and `project`,
 * `stage`, `service` matched against the raw filter strings (spec §9.5).
 */
export function matchesRegistrationQuery(integration: Integration, query: URLSearchParams): boolean {
  const filter = isRecord(integration.subscription.filter) ? integration.subscription.filter : {};
  const wanted = (name: string, actual: unknown): boolean => {
    const value = query.get(name);
    return value === null || value === '' || value === actual;
  };
  return wanted('id', integration.id) && wanted('name', integration.name)
    && wanted('project', filter.project) && wanted('stage', filter.stage) && wanted('service', filter.service);
}
