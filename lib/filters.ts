/**
 * PROJECT_FILTER, STAGE_FILTER and SERVICE_FILTER: which polled events are
 * dispatched. Pure functions; the poller applies them before anything is sent.
 */
import type { Config } from './config.ts';

/** The three filters as lists (already split on commas, trimmed, empty items dropped). */
export interface EventFilter {
  readonly projects: readonly string[];
  readonly stages: readonly string[];
  readonly services: readonly string[];
}

export function filterFromConfig(config: Pick<Config, 'projectFilter' | 'stageFilter' | 'serviceFilter'>): EventFilter {
  return { projects: config.projectFilter, stages: config.stageFilter, services: config.serviceFilter };
}

/** True when no filter is set: every event is dispatched. */
export function isUnfiltered(filter: EventFilter): boolean {
  return filter.projects.length === 0 && filter.stages.length === 0 && filter.services.length === 0;
}

/**
 * Whether an event is dispatched under `filter`.
 *
 * - Every non-empty filter must match (project AND stage AND service); an
 *   empty filter matches everything.
 * - A filter matches when `data.<field>` is a string exactly equal
 *   (case-sensitive, no substring or pattern) to one of its items, as the
 *   reference compares (`PROJECT_FILTER=a,b` matches `project: "a"`, not
 *   `"A"`, not `"ab"`).
 * - Fail-closed, as the reference from 0.10.0 on: with a non-empty filter, an
 *   event whose `data` is not a JSON object, or lacks the field, or has a
 *   non-string (or empty) value there, does not match. The 0.8.7 reference
 *   let events with undecodable `data` through (fail-open), and let a
 *   trailing comma (`a,`) match a missing field; neither happens here, since
 *   the lists carry no empty items and blanks around commas are trimmed.
 */
export function matchesFilter(event: { readonly data?: unknown }, filter: EventFilter): boolean {
  if (isUnfiltered(filter)) return true;
  const data = event.data;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return false;
  const fields = data as Record<string, unknown>;
  return matchesOne(fields.project, filter.projects)
    && matchesOne(fields.stage, filter.stages)
    && matchesOne(fields.service, filter.services);
}

function matchesOne(value: unknown, allowed: readonly string[]): boolean {
  if (allowed.length === 0) return true;
  return typeof value === 'string' && allowed.includes(value);
}

/**
 * The query parameters worth sending with a poll: `project`, `stage` and
 * `service` each when the filter names exactly one value for it, so the
 * control plane searches less (as the reference does from 0.13.0 on, go-utils
 * `GetOpenTriggeredEvents`). The filter is still applied to what comes back.
 */
export function serverSideFilter(filter: EventFilter): { project?: string; stage?: string; service?: string } {
  return {
    ...(filter.projects.length === 1 && { project: filter.projects[0] }),
    ...(filter.stages.length === 1 && { stage: filter.stages[0] }),
    ...(filter.services.length === 1 && { service: filter.services[0] }),
  };
}
