/**
 * One readable line per thing that happens in the emulated control plane, so
 * that a newcomer running `keptn-distributor emulate` can follow a task from
 * `.triggered` to `.finished`:
 *
 *     12:00:00 → open     sh.keptn.event.test.triggered  id 3f3a5cd6…  ctx 0c1f5f5c…  sockshop/dev/carts
 *     12:00:01 ⇢ polled   sh.keptn.event.test.triggered: 1 open (3f3a5cd6…)
 *     12:00:01 ← sh.keptn.event.test.started  from my-service  ctx 0c1f5f5c…  → started 3f3a5cd6…
 *     12:00:02 ← sh.keptn.event.test.finished  from my-service  ctx 0c1f5f5c…  succeeded/pass  → closed triggered 3f3a5cd6…
 *
 * Polls are told only when their answer differs from the previous poll of
 * the same type, and a re-registration only when it is new: an agent polls
 * and re-registers every few seconds.
 */
import { isRecord } from '../json-object.ts';
import { placeOf, type TriggeredEvent } from './event-model.ts';
import type { Outcome } from './lifecycle.ts';
import type { Integration, LogEntry, ReceivedEvent, Subscription } from './state.ts';

export interface Narrator {
  opened(event: TriggeredEvent): void;
  received(received: ReceivedEvent): void;
  polled(type: string, events: readonly TriggeredEvent[]): void;
  registered(integration: Integration, isNew: boolean): void;
  unregistered(id: string): void;
  subscriptionChanged(integration: Integration, subscription: Subscription, change: 'added' | 'changed' | 'removed'): void;
  logged(entries: readonly LogEntry[]): void;
  /** A request answered with an error status. */
  refused(method: string, path: string, status: number, why: string): void;
}

/** A narrator writing to `log`; silent without one. */
export function createNarrator(log: ((line: string) => void) | undefined, now: () => Date): Narrator {
  const lastPoll = new Map<string, string>();
  const say = (text: string): void => {
    if (log !== undefined) log(`${now().toTimeString().slice(0, 8)} ${text}`);
  };
  return {
    opened(event) {
      const { project, stage, service } = placeOf(event.data);
      say(`→ open     ${event.type}  id ${short(event.id)}  ctx ${short(event.shkeptncontext)}  ${project}/${stage}/${service}`);
    },
    received({ stored, outcome }) {
      const verdict = resultOf(stored.data);
      say(`← ${stored.type}  from ${stored.source}  ctx ${short(stored.shkeptncontext)}${verdict ? `  ${verdict}` : ''}  → ${describe(outcome)}`);
    },
    polled(type, events) {
      const ids = events.map((event) => short(event.id)).join(', ');
      if (lastPoll.get(type) === ids) return;
      lastPoll.set(type, ids);
      say(`⇢ polled   ${type}: ${events.length} open${events.length > 0 ? ` (${ids})` : ''}`);
    },
    registered(integration, isNew) {
      if (!isNew) return;
      const metadata = integration.metadata;
      const kubernetes = isRecord(metadata.kubernetesmetadata) ? metadata.kubernetesmetadata : {};
      const topics = integration.subscriptions !== undefined ? integration.subscriptions.map((subscription) => subscription.event).join(', ')
        : Array.isArray(integration.subscription.topics) ? integration.subscription.topics.join(', ') : '';
      say(`⇄ registered ${integration.name} (namespace ${String(kubernetes.namespace)})  id ${short(integration.id)}${topics ? `  topics ${topics}` : ''}`);
    },
    unregistered(id) {
      say(`⇄ unregistered ${short(id)}`);
    },
    subscriptionChanged(integration, subscription, change) {
      const { projects, stages, services } = subscription.filter;
      const fields: Array<[string, readonly string[]]> = [['project', projects], ['stage', stages], ['service', services]];
      const filter = fields.filter(([, values]) => values.length > 0).map(([field, values]) => `${field}=${values.join('|')}`).join(' ');
      say(`⇄ subscription ${change} ${integration.name}  ${subscription.event}${filter ? `  ${filter}` : ''}  id ${short(subscription.id)}`);
    },
    logged(entries) {
      for (const entry of entries) {
        say(`✎ log from ${short(entry.integrationid) || '?'}${entry.task ? `  task ${entry.task}` : ''}${entry.shkeptncontext ? `  ctx ${short(entry.shkeptncontext)}` : ''}: ${entry.message}`);
      }
    },
    refused(method, path, status, why) {
      say(`✗ ${status} ${method} ${path}: ${why}`);
    },
  };
}

function describe(outcome: Outcome): string {
  switch (outcome.kind) {
    case 'opened': return `open as ${short(outcome.triggeredId)}`;
    case 'started': return `started ${short(outcome.triggeredId)}`;
    case 'closed': return `closed triggered ${short(outcome.triggeredId)}`;
    case 'waiting': return `finished; triggered ${short(outcome.triggeredId)} stays open (${outcome.remaining} other .started)`;
    case 'rejected': return `rejected: ${outcome.reason}`;
    case 'ignored': return `ignored: ${outcome.reason}`;
    case 'recorded': return 'recorded';
  }
}

/** `status/result` of a `.finished` event's data, when it has them. */
function resultOf(data: unknown): string {
  if (!isRecord(data)) return '';
  return [data.status, data.result].filter((part) => typeof part === 'string' && part !== '').join('/');
}

/** The first 8 characters of an id, enough to tell events apart on a screen. */
function short(id: string): string {
  return id.length > 9 ? `${id.slice(0, 8)}…` : id;
}
