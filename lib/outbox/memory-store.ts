/** The outbox store without STATE_DIR: nothing to persist, so nothing survives a restart. */
import type { OutboxStore, StoredEvent } from './store.ts';

export class MemoryStore implements OutboxStore {
  readonly durable = false;
  readonly location = 'memory';

  open(): Promise<{ events: readonly StoredEvent[]; nextSeq: number }> {
    return Promise.resolve({ events: [], nextSeq: 1 });
  }

  append(): Promise<void> {
    return Promise.resolve();
  }

  remove(): void {
    // The outbox holds the only copy; there is nothing else to forget.
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
