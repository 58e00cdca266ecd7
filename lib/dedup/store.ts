/**
 * The dedup record: which triggered event ids of each topic were handed to
 * the dispatcher, so that no poll dispatches them again.
 *
 * The rules (who calls what, and when) live in the poller:
 * - an id is `add`ed when its dispatch is queued, and `persist`ed right before
 *   the request goes out;
 * - it is `release`d when its dispatch surely failed, so a later poll tries again;
 * - `retain` drops the ids a complete, successful poll of the topic no longer
 *   lists; a failed or partial poll never calls it.
 *
 * Lookups are O(1); the record holds no more than the ids still open.
 */
export interface DedupStore {
  /** Loads what an earlier run left (a disk store); never fails for a missing or corrupt file. */
  open(): Promise<void>;
  has(topic: string, id: string): boolean;
  /** Records `id` in memory (visible to `has` at once); not yet durable. */
  add(topic: string, id: string): void;
  /**
   * Makes a recorded id durable; resolves once it is (at once for the memory
   * store). Rejects if it cannot be written: the dispatch must then not go out.
   */
  persist(topic: string, id: string): Promise<void>;
  /** Forgets one id: its dispatch failed and a later poll may dispatch it again. */
  release(topic: string, id: string): void;
  /** Keeps only the ids of `topic` that are in `listed`; returns how many were dropped. */
  retain(topic: string, listed: ReadonlySet<string>): number;
  /** Drops every topic that is not in `topics` (an earlier configuration's); returns the ids dropped. */
  retainTopics(topics: ReadonlySet<string>): number;
  /** The topics (subscription keys) with ids recorded. */
  topics(): readonly string[];
  /** The ids recorded for `topic` (a copy): what a subscription replacing it takes over. */
  ids(topic: string): readonly string[];
  /** Ids recorded for `topic`, or in all topics. */
  size(topic?: string): number;
  /** Writes out whatever is pending (removals are written lazily). */
  flush(): Promise<void>;
  /** Flushes and releases the file. Idempotent. */
  close(): Promise<void>;
}

/** The in-memory record shared by both stores: topic → set of ids. */
export class IdSets {
  readonly #topics = new Map<string, Set<string>>();

  has(topic: string, id: string): boolean {
    return this.#topics.get(topic)?.has(id) ?? false;
  }

  /** Returns false when the id was already there. */
  add(topic: string, id: string): boolean {
    let ids = this.#topics.get(topic);
    if (ids === undefined) {
      ids = new Set();
      this.#topics.set(topic, ids);
    }
    if (ids.has(id)) return false;
    ids.add(id);
    return true;
  }

  /** Returns false when the id was not there. */
  delete(topic: string, id: string): boolean {
    const ids = this.#topics.get(topic);
    if (ids === undefined || !ids.delete(id)) return false;
    if (ids.size === 0) this.#topics.delete(topic);
    return true;
  }

  /** Removes the ids of `topic` not in `listed`; returns them. */
  retain(topic: string, listed: ReadonlySet<string>): string[] {
    const ids = this.#topics.get(topic);
    if (ids === undefined) return [];
    const dropped: string[] = [];
    for (const id of ids) if (!listed.has(id)) dropped.push(id);
    for (const id of dropped) ids.delete(id);
    if (ids.size === 0) this.#topics.delete(topic);
    return dropped;
  }

  /** Removes every topic not in `topics`; returns the removed `[topic, ids]`. */
  retainTopics(topics: ReadonlySet<string>): Array<[string, string[]]> {
    const dropped: Array<[string, string[]]> = [];
    for (const [topic, ids] of this.#topics) if (!topics.has(topic)) dropped.push([topic, [...ids]]);
    for (const [topic] of dropped) this.#topics.delete(topic);
    return dropped;
  }

  topics(): string[] {
    return [...this.#topics.keys()];
  }

  ids(topic: string): string[] {
    return [...(this.#topics.get(topic) ?? [])];
  }

  size(topic?: string): number {
    if (topic !== undefined) return this.#topics.get(topic)?.size ?? 0;
    let total = 0;
    for (const ids of this.#topics.values()) total += ids.size;
    return total;
  }

  entries(): IterableIterator<[string, ReadonlySet<string>]> {
    return this.#topics.entries();
  }

  clear(): void {
    this.#topics.clear();
  }
}
