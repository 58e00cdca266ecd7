/**
 * The outbox store with STATE_DIR: an append-only journal, `outbox.log`, one
 * JSON object per line:
 *
 *     {"op":"add","seq":7,"at":1690000000000,"event":{…the event…}}
 *     {"op":"done","seq":7}
 *
 * An event is live when its `add` line has no `done` line. `append` resolves
 * only after its line is written and fdatasync'ed, so the relay's `202` means
 * "on disk". Writes are group-committed: lines that arrive while a write and
 * sync are under way go out together in the next one, so many concurrent
 * relays cost one sync, not one each.
 *
 * Crash safety: a crash can leave a torn last line, which is ignored (with a
 * warning) when the journal is read back; a lost `done` line only means the
 * event is delivered again after the restart (a `.started` is checked with
 * the control plane first, see delivery.ts). Opening the store rewrites the
 * journal with the live events only (write a temporary file, sync, rename,
 * sync the directory), which also cuts a torn tail off; the same compaction
 * runs whenever `done` lines dominate.
 */
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import type { OutboxStore, StoredEvent } from './store.ts';
import { syncDirectory } from '../sync-directory.ts';

export const JOURNAL_FILE = 'outbox.log';

export interface FileStoreOptions {
  /** STATE_DIR; created when missing. */
  readonly dir: string;
  readonly logger: Logger;
  /** Compact once this many `done` lines were written and they outnumber the live events. */
  readonly compactAfter?: number;
}

interface Waiter {
  /** The event whose `add` line it waits for. */
  readonly seq: number;
  resolve(): void;
  reject(error: Error): void;
}

export class FileStore implements OutboxStore {
  readonly durable = true;
  readonly location: string;
  readonly #dir: string;
  readonly #logger: Logger;
  readonly #compactAfter: number;
  readonly #live = new Map<number, StoredEvent>();
  #handle: FileHandle | undefined;
  #lines: string[] = [];
  #waiters: Waiter[] = [];
  #flushing: Promise<void> | undefined;
  #writing = false;
  #doneSinceCompaction = 0;
  /**
   * A write failed: the journal may end in a fragment of a line, and what it
   * lacks is unknown. Nothing more is appended until it has been rewritten
   * whole from the live events.
   */
  #rewriteNeeded = false;
  #opened = false;
  #closed = false;

  constructor({ dir, logger, compactAfter = 1_000 }: FileStoreOptions) {
    this.#dir = dir;
    this.location = join(dir, JOURNAL_FILE);
    this.#logger = logger;
    this.#compactAfter = compactAfter;
  }

  async open(): Promise<{ events: readonly StoredEvent[]; nextSeq: number }> {
    await mkdir(this.#dir, { recursive: true });
    let text = '';
    try {
      text = await readFile(this.location, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    let maxSeq = 0;
    const lines = text.split('\n');
    lines.forEach((line, index) => {
      if (line.trim() === '') return;
      const record = parseLine(line);
      if (record === undefined) {
        const torn = index === lines.length - 1;
        this.#logger.warn(torn ? 'ignoring the torn last line of the outbox journal (a crash while writing it)' : 'ignoring an unreadable line of the outbox journal', {
          file: this.location, line: index + 1,
        });
        return;
      }
      maxSeq = Math.max(maxSeq, record.seq);
      if (record.op === 'add') this.#live.set(record.seq, { seq: record.seq, acceptedAt: record.at, json: record.json });
      else this.#live.delete(record.seq);
    });
    await this.#compact();
    this.#opened = true;
    const events = [...this.#live.values()].sort((a, b) => a.seq - b.seq);
    return { events, nextSeq: maxSeq + 1 };
  }

  append(event: StoredEvent): Promise<void> {
    if (this.#closed || !this.#opened) return Promise.reject(new Error('the outbox journal is closed'));
    this.#live.set(event.seq, event);
    this.#lines.push(addLine(event));
    const written = new Promise<void>((resolve, reject) => this.#waiters.push({ seq: event.seq, resolve, reject }));
    this.#flushSoon();
    return written;
  }

  remove(seq: number): void {
    if (this.#closed || !this.#live.delete(seq)) return;
    this.#lines.push(`{"op":"done","seq":${seq}}\n`);
    this.#doneSinceCompaction++;
    this.#flushSoon();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#flushing;
    if (this.#lines.length > 0 || this.#rewriteNeeded) await this.#flush();
    await this.#handle?.close();
    this.#handle = undefined;
  }

  #flushSoon(): void {
    if (this.#writing) return;
    this.#writing = true;
    this.#flushing = this.#flush();
  }

  /** Writes every pending line, one write and one sync per batch, until nothing is pending. */
  async #flush(): Promise<void> {
    try {
      while (this.#lines.length > 0 || this.#rewriteNeeded) {
        if (this.#rewriteNeeded) {
          if (!(await this.#rewrite())) return;
          continue;
        }
        const lines = this.#lines;
        const waiters = this.#waiters;
        this.#lines = [];
        this.#waiters = [];
        try {
          const handle = this.#handle;
          if (handle === undefined) throw new Error('the outbox journal is closed');
          await handle.write(lines.join(''));
          await handle.datasync();
          for (const waiter of waiters) waiter.resolve();
        } catch (error) {
          this.#fail(waiters, error, 'cannot write the outbox journal');
          this.#rewriteNeeded = true;
        }
        if (this.#doneSinceCompaction >= this.#compactAfter && this.#doneSinceCompaction >= this.#live.size) await this.#compactPending();
      }
    } finally {
      // Cleared in the same turn as the loop's last check, so an append never finds a flush that will not see it.
      this.#writing = false;
    }
  }

  /**
   * After a failed write: replaces the journal by the live events, which
   * include every pending `add` and exclude every pending `done`. Returns
   * false when that fails too; the pending events are then refused as well.
   */
  async #rewrite(): Promise<boolean> {
    const waiters = this.#waiters;
    this.#lines = [];
    this.#waiters = [];
    try {
      await this.#compact();
      this.#rewriteNeeded = false;
      for (const waiter of waiters) waiter.resolve();
      return true;
    } catch (error) {
      this.#fail(waiters, error, 'cannot rewrite the outbox journal');
      return false;
    }
  }

  /**
   * Refuses the events of a batch that did not reach the disk: the relay
   * answers 503 for them, so they must not come back from the journal later.
   */
  #fail(waiters: readonly Waiter[], error: unknown, what: string): void {
    const reason = error instanceof Error ? error : new Error(String(error));
    this.#logger.error(what, { file: this.location, error: reason.message });
    for (const waiter of waiters) {
      this.#live.delete(waiter.seq);
      waiter.reject(reason);
    }
  }

  /** Compacts; the lines pending meanwhile are part of the live set, so the compacted file stands for them. */
  async #compactPending(): Promise<void> {
    const lines = this.#lines;
    const waiters = this.#waiters;
    this.#lines = [];
    this.#waiters = [];
    try {
      await this.#compact();
      for (const waiter of waiters) waiter.resolve();
    } catch (error) {
      this.#logger.error('cannot compact the outbox journal', { file: this.location, error: error instanceof Error ? error.message : String(error) });
      // The journal is still the old one: append those lines to it after all.
      this.#lines = [...lines, ...this.#lines];
      this.#waiters = [...waiters, ...this.#waiters];
    }
  }

  /** Replaces the journal by one holding only the live events, atomically, and reopens it for appending. */
  async #compact(): Promise<void> {
    const temporary = `${this.location}.tmp`;
    const file = await open(temporary, 'w');
    try {
      const lines: string[] = [];
      for (const event of this.#live.values()) lines.push(addLine(event));
      await file.write(lines.join(''));
      await file.datasync();
    } finally {
      await file.close();
    }
    await this.#handle?.close();
    this.#handle = undefined;
    try {
      await rename(temporary, this.location);
      await syncDirectory(this.#dir);
    } finally {
      this.#handle = await open(this.location, 'a');
    }
    this.#doneSinceCompaction = 0;
  }
}

function addLine(event: StoredEvent): string {
  return `{"op":"add","seq":${event.seq},"at":${event.acceptedAt},"event":${event.json}}\n`;
}

type JournalRecord = { op: 'add'; seq: number; at: number; json: string } | { op: 'done'; seq: number };

function parseLine(line: string): JournalRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  if (typeof record.seq !== 'number' || !Number.isSafeInteger(record.seq) || record.seq < 1) return undefined;
  if (record.op === 'done') return { op: 'done', seq: record.seq };
  if (record.op === 'add' && typeof record.at === 'number' && typeof record.event === 'object' && record.event !== null) {
    return { op: 'add', seq: record.seq, at: record.at, json: JSON.stringify(record.event) };
  }
  return undefined;
}

