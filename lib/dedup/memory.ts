/**
 * The default dedup record (STATE_DIR empty): in memory only, so a restarted
 * agent dispatches again what is still open.
 */
import { IdSets, type DedupStore } from './store.ts';

export class MemoryDedupStore implements DedupStore {
  readonly #ids = new IdSets();

  async open(): Promise<void> {}

  has(topic: string, id: string): boolean {
    return this.#ids.has(topic, id);
  }

  add(topic: string, id: string): void {
    this.#ids.add(topic, id);
  }

  async persist(topic: string, id: string): Promise<void> {
    this.#ids.add(topic, id);
  }

  release(topic: string, id: string): void {
    this.#ids.delete(topic, id);
  }

  retain(topic: string, listed: ReadonlySet<string>): number {
    return this.#ids.retain(topic, listed).length;
  }

  retainTopics(topics: ReadonlySet<string>): number {
    return this.#ids.retainTopics(topics).reduce((total, [, ids]) => total + ids.length, 0);
  }

  topics(): readonly string[] {
    return this.#ids.topics();
  }

  ids(topic: string): readonly string[] {
    return this.#ids.ids(topic);
  }

  size(topic?: string): number {
    return this.#ids.size(topic);
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {}
}
