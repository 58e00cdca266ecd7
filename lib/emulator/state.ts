/**
 * The emulated control plane's memory: open `.triggered` events per project,
 * the `.started` events that hold them open, every event received and every
 * event the datastore holds, registrations, log entries and resources. Plain
 * data and queries, no HTTP and no Keptn rules (those live in lifecycle.ts).
 */
import { placeOf, type DatastoreEvent, type TriggeredEvent } from './event-model.ts';
import type { Outcome } from './lifecycle.ts';

/** An event posted to `POST /v1/event` and accepted. */
export interface ReceivedEvent {
  /** The JSON object exactly as it was posted. */
  readonly event: Readonly<Record<string, unknown>> & { readonly type: string; readonly source: string; readonly data: unknown };
  /** The event as the api-service re-created it (new `id` and `time`) and the control plane handled it. */
  readonly stored: DatastoreEvent;
  /** The Keptn context answered to the poster. */
  readonly keptnContext: string;
  /** When it arrived (ISO 8601). */
  readonly receivedAt: string;
  /** What the shipyard-controller made of it (e.g. a `.finished` rejected for want of a `.started`). */
  readonly outcome: Outcome;
}

/** A `.started` event that keeps a `.triggered` event open (the shipyard-controller's `<project>-startedEvents`). */
export interface StartedRecord {
  readonly project: string;
  readonly task: string;
  readonly triggeredId: string;
  readonly source: string;
  readonly eventId: string;
}

/** A 1.x event subscription (go-utils `models.EventSubscription`). */
export interface Subscription {
  readonly id: string;
  readonly event: string;
  readonly filter: { readonly projects: readonly string[]; readonly stages: readonly string[]; readonly services: readonly string[] };
}

/**
 * A registered integration as the 0.8.x shipyard-controller stores it (spec
 * §9.2–9.3); in 1.x mode with its `subscriptions` too.
 */
export interface Integration {
  readonly id: string;
  readonly name: string;
  readonly metadata: Readonly<Record<string, unknown>> & { readonly lastseen: string };
  readonly subscription: Readonly<Record<string, unknown>>;
  readonly subscriptions?: readonly Subscription[];
}

/** A log entry of `POST /controlPlane/v1/log` (spec §8.4). */
export interface LogEntry {
  readonly integrationid: string;
  readonly message: string;
  readonly time: string;
  readonly shkeptncontext: string;
  readonly task: string;
  readonly triggeredid: string;
}

/** A configuration-service resource. */
export interface StoredResource {
  readonly project: string;
  readonly stage: string;
  readonly service: string;
  /** The resource URI after both decodings (gateway and service), e.g. `helm/values.yaml`. */
  readonly resourceURI: string;
  /** As sent: base64 in Keptn's API. */
  readonly resourceContent: string;
  /** The request path of the last write, still percent-encoded, to check a proxy's escaping. */
  readonly rawPath: string;
  readonly version: number;
}

/** Equality filters on an open `.triggered` event, as the poll route's query has them. */
export interface TriggeredFilter {
  readonly type?: string;
  readonly project?: string;
  readonly stage?: string;
  readonly service?: string;
  readonly eventId?: string;
}

/** Equality filters on received or stored events. */
export interface EventFilter {
  readonly type?: string;
  readonly keptnContext?: string;
  readonly source?: string;
  readonly triggeredId?: string;
  readonly project?: string;
  readonly stage?: string;
  readonly service?: string;
}

/** A project as far as the control plane has seen it: its stages and their services. */
export interface ProjectOutline {
  readonly projectName: string;
  readonly stages: ReadonlyArray<{ readonly stageName: string; readonly services: ReadonlyArray<{ readonly serviceName: string }> }>;
}

export class ControlPlaneState {
  /** Open `.triggered` events per project, projects in the order they first appeared. */
  readonly #open = new Map<string, TriggeredEvent[]>();
  /** `<project> <id>` of every open event: opening 10,000 tasks must not scan the list each time. */
  readonly #openKeys = new Set<string>();
  readonly #started: StartedRecord[] = [];
  readonly #received: ReceivedEvent[] = [];
  readonly #datastore: DatastoreEvent[] = [];
  readonly #integrations = new Map<string, Integration>();
  readonly #logs: LogEntry[] = [];
  readonly #resources = new Map<string, StoredResource>();
  /** project → stage → services, from the events seen. */
  readonly #catalog = new Map<string, Map<string, Set<string>>>();

  // ---- open .triggered events --------------------------------------------

  /** Adds a `.triggered` event to its project's open list. Throws if that id is open already. */
  open(event: TriggeredEvent): void {
    const { project } = placeOf(event.data);
    const key = `${project}\u0000${event.id}`;
    if (this.#openKeys.has(key)) {
      throw new Error(`a .triggered event with id ${event.id} is open already in project "${project}"`);
    }
    this.#openKeys.add(key);
    const list = this.#open.get(project) ?? [];
    list.push(event);
    this.#open.set(project, list);
    this.#remember(event.data);
  }

  /** Removes an open `.triggered` event; returns it, or undefined when it was not open. */
  close(project: string, id: string): TriggeredEvent | undefined {
    const list = this.#open.get(project) ?? [];
    const index = list.findIndex((event) => event.id === id);
    if (index < 0) return undefined;
    this.#openKeys.delete(`${project}\u0000${id}`);
    return list.splice(index, 1)[0];
  }

  /**
   * Open `.triggered` events matching `filter`, in the order a poll lists
   * them: project after project, newest first within a project. `time` is
   * compared as a string, as the shipyard-controller's MongoDB sort does.
   */
  findOpen(filter: TriggeredFilter = {}): TriggeredEvent[] {
    const projects = filter.project === undefined ? [...this.#open.values()] : [this.#open.get(filter.project) ?? []];
    return projects.flatMap((list) => list
      .filter((event) => matchesTriggered(event, filter))
      .sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0)));
  }

  // ---- .started records ------------------------------------------------

  addStarted(record: StartedRecord): void {
    this.#started.push(record);
  }

  /** The `.started` records of one task run. */
  startedFor(project: string, task: string, triggeredId: string): StartedRecord[] {
    return this.#started.filter((record) => record.project === project && record.task === task && record.triggeredId === triggeredId);
  }

  /** Deletes the `.started` records of one task run sent by `source`; returns how many went. */
  removeStarted(project: string, task: string, triggeredId: string, source: string): number {
    let removed = 0;
    for (let index = this.#started.length - 1; index >= 0; index--) {
      const record = this.#started[index];
      if (record && record.project === project && record.task === task && record.triggeredId === triggeredId && record.source === source) {
        this.#started.splice(index, 1);
        removed++;
      }
    }
    return removed;
  }

  // ---- events received and stored ----------------------------------------

  /** Keeps an accepted `POST /v1/event`. */
  addReceived(received: ReceivedEvent): void {
    this.#received.push(received);
    this.#remember(received.stored.data);
  }

  /** Accepted posts in arrival order. */
  received(filter: EventFilter = {}): ReceivedEvent[] {
    return this.#received.filter((received) => matchesEvent(received.stored, filter));
  }

  /** Keeps the datastore's copy of an event. */
  addToDatastore(event: DatastoreEvent): void {
    this.#datastore.push(event);
  }

  /** The datastore's events, in the order they were stored. */
  datastore(filter: EventFilter = {}): DatastoreEvent[] {
    return this.#datastore.filter((event) => matchesEvent(event, filter));
  }

  // ---- registrations -------------------------------------------------------

  /** Inserts or replaces a registration; true when it is new. */
  register(integration: Integration): boolean {
    const isNew = !this.#integrations.has(integration.id);
    this.#integrations.set(integration.id, integration);
    return isNew;
  }

  /** Deletes a registration; false when there was none with that id. */
  unregister(id: string): boolean {
    return this.#integrations.delete(id);
  }

  integration(id: string): Integration | undefined {
    return this.#integrations.get(id);
  }

  integrations(): Integration[] {
    return [...this.#integrations.values()];
  }

  // ---- logs ----------------------------------------------------------------

  addLogs(entries: readonly LogEntry[]): void {
    this.#logs.push(...entries);
  }

  logs(): LogEntry[] {
    return [...this.#logs];
  }

  // ---- resources -------------------------------------------------------------

  /** Stores a resource; returns it with its new version. */
  putResource(resource: Omit<StoredResource, 'version'>): StoredResource {
    const key = resourceKey(resource);
    const stored = { ...resource, version: (this.#resources.get(key)?.version ?? 0) + 1 };
    this.#resources.set(key, stored);
    return stored;
  }

  resource(place: Pick<StoredResource, 'project' | 'stage' | 'service' | 'resourceURI'>): StoredResource | undefined {
    return this.#resources.get(resourceKey(place));
  }

  resources(): StoredResource[] {
    return [...this.#resources.values()];
  }

  // ---- projects ----------------------------------------------------------------

  /** A project's stages and services as far as events named them, or undefined if none did. */
  project(name: string): ProjectOutline | undefined {
    const stages = this.#catalog.get(name);
    if (stages === undefined) return undefined;
    return {
      projectName: name,
      stages: [...stages].map(([stageName, services]) => ({ stageName, services: [...services].map((serviceName) => ({ serviceName })) })),
    };
  }

  #remember(data: unknown): void {
    const { project, stage, service } = placeOf(data);
    if (project === '') return;
    const stages = this.#catalog.get(project) ?? new Map<string, Set<string>>();
    this.#catalog.set(project, stages);
    if (stage === '') return;
    const services = stages.get(stage) ?? new Set<string>();
    stages.set(stage, services);
    if (service !== '') services.add(service);
  }
}

function matchesTriggered(event: TriggeredEvent, filter: TriggeredFilter): boolean {
  const place = placeOf(event.data);
  return (filter.type === undefined || event.type === filter.type)
    && (filter.stage === undefined || place.stage === filter.stage)
    && (filter.service === undefined || place.service === filter.service)
    && (filter.eventId === undefined || event.id === filter.eventId);
}

function matchesEvent(event: DatastoreEvent, filter: EventFilter): boolean {
  const place = placeOf(event.data);
  return (filter.type === undefined || event.type === filter.type)
    && (filter.keptnContext === undefined || event.shkeptncontext === filter.keptnContext)
    && (filter.source === undefined || event.source === filter.source)
    && (filter.triggeredId === undefined || event.triggeredid === filter.triggeredId)
    && (filter.project === undefined || place.project === filter.project)
    && (filter.stage === undefined || place.stage === filter.stage)
    && (filter.service === undefined || place.service === filter.service);
}

function resourceKey(place: Pick<StoredResource, 'project' | 'stage' | 'service' | 'resourceURI'>): string {
  return JSON.stringify([place.project, place.stage, place.service, place.resourceURI]);
}
