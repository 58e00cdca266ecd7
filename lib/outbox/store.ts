/**
 * Where the outbox keeps the events it has accepted and not yet delivered:
 * in memory, or in a journal under STATE_DIR that survives a restart.
 */

/** One accepted event, as the outbox stores it. */
export interface StoredEvent {
  /** Position in acceptance order: unique among the events kept, increasing within one run. */
  readonly seq: number;
  /** When the relay accepted it (ms since the epoch): the age cap counts from here. */
  readonly acceptedAt: number;
  /** The event's JSON text, exactly what is sent (one line: no raw newline). */
  readonly json: string;
}

export interface OutboxStore {
  /** True when what `append` accepted survives a crash. */
  readonly durable: boolean;
  /** Where the store lives, for log lines (`memory` or a file path). */
  readonly location: string;
  /** The events left from a previous run, in `seq` order; the next `seq` to use follows them. */
  open(): Promise<{ readonly events: readonly StoredEvent[]; readonly nextSeq: number }>;
  /** Resolves once the event is stored (on disk, for a durable store); rejects if it cannot be. */
  append(event: StoredEvent): Promise<void>;
  /** The event was delivered, rejected or dead-lettered: forget it (persisted soon, not awaited). */
  remove(seq: number): void;
  /** Writes what is pending and releases the store. Idempotent. */
  close(): Promise<void>;
}
