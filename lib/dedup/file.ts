/**
 * The dedup record on disk (STATE_DIR set), so that a restarted agent does not
 * dispatch again what it already handed over.
 *
 * Format: `<STATE_DIR>/dedup.log`, JSON lines. The first line is a header;
 * each further line is `["+", topic, id]` (handed over) or `["-", topic, id]`
 * (forgotten). Loading replays the lines. The log is appended to in batches
 * and rewritten whole (temp file, fsync, rename, fsync of the directory) at
 * start and whenever it holds more than twice the live ids, so its size stays
 * proportional to the open events and no event costs a rewrite.
 *
 * The crash window, and why it is here: an id reaches the disk *before* its
 * dispatch goes out (`persist` resolves after the batch holding it was written
 * and fsynced), and not before: ids waiting in the dispatch queue are only in
 * memory. So a crash can never make the agent re-send an event it had sent,
 * and loses at most the events whose id was written but whose request had not
 * left yet (milliseconds). Removals are written lazily: one lost in a crash
 * leaves a stale id, which the first complete poll after the restart drops.
 *
 * A missing file starts empty; a file that cannot be read as this format starts
 * empty with a warning and is kept beside as `dedup.log.corrupt`. A torn last
 * line (a crash during an append) is ignored. Two agents must not share one
 * STATE_DIR.
 */
import { mkdir, open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import { IdSets, type DedupStore } from './store.ts';
import { syncDirectory } from '../sync-directory.ts';

export const DEDUP_FILE = 'dedup.log';
const HEADER = JSON.stringify({ format: 'keptn-distributor dedup log', version: 1 });
/** Below this many lines the log is never compacted: rewriting a small file gains nothing. */
const COMPACT_MIN_LINES = 1_000;

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

export interface FileDedupStoreOptions {
  /** STATE_DIR. */
  readonly dir: string;
  readonly logger: Logger;
}

export class FileDedupStore implements DedupStore {
  readonly #path: string;
  readonly #dir: string;
  readonly #logger: Logger;
  /** The record: every id handed to the dispatcher, written or not. */
  readonly #ids = new IdSets();
  /** What the file holds once pending lines are written: the ids whose `+` line was written. */
  readonly #durable = new IdSets();
  /** The append handle; undefined before `open`, after `close`, and after a failed rewrite. */
  #file: FileHandle | undefined;
  #pendingLines: string[] = [];
  #waiters: Waiter[] = [];
  #writing: Promise<void> | undefined;
  /** Lines in the file, header excluded. */
  #lines = 0;
  /** A write failed: the file may end in a torn line, so the next write rewrites it whole. */
  #rewriteNeeded = false;
  #failing = false;
  #opened = false;
  #closed = false;

  constructor({ dir, logger }: FileDedupStoreOptions) {
    this.#dir = dir;
    this.#path = join(dir, DEDUP_FILE);
    this.#logger = logger;
  }

  get path(): string {
    return this.#path;
  }

  async open(): Promise<void> {
    try {
      await mkdir(this.#dir, { recursive: true });
    } catch (error) {
      throw new Error(`STATE_DIR "${this.#dir}" cannot be used: ${messageOf(error)}`);
    }
    let text: string | undefined;
    try {
      text = await readFile(this.#path, 'utf8');
    } catch (error) {
      if (!isNotFound(error)) throw new Error(`cannot read ${this.#path}: ${messageOf(error)}`);
      this.#logger.info('no dedup record yet: starting empty', { path: this.#path });
    }
    if (text !== undefined) {
      const problem = this.#load(text);
      if (problem !== undefined) {
        this.#ids.clear();
        this.#durable.clear();
        await rename(this.#path, `${this.#path}.corrupt`).catch(() => undefined);
        this.#logger.warn('the dedup record is corrupt: starting empty, open events may be dispatched again',
          { path: this.#path, keptAs: `${this.#path}.corrupt`, problem });
      } else {
        this.#logger.info('dedup record loaded', { path: this.#path, ids: this.#ids.size() });
      }
    }
    try {
      await this.#rewrite();
    } catch (error) {
      throw new Error(`STATE_DIR "${this.#dir}" cannot be used: ${messageOf(error)}`);
    }
    this.#opened = true;
  }

  has(topic: string, id: string): boolean {
    return this.#ids.has(topic, id);
  }

  add(topic: string, id: string): void {
    this.#ids.add(topic, id);
  }

  persist(topic: string, id: string): Promise<void> {
    if (!this.#opened || this.#closed) return Promise.reject(new Error('the dedup record is not open'));
    this.#ids.add(topic, id);
    if (this.#durable.has(topic, id)) return Promise.resolve();
    this.#pendingLines.push(JSON.stringify(['+', topic, id]));
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ resolve, reject });
      this.#kick();
    });
  }

  release(topic: string, id: string): void {
    this.#ids.delete(topic, id);
    this.#forget(topic, id);
  }

  retain(topic: string, listed: ReadonlySet<string>): number {
    const dropped = this.#ids.retain(topic, listed);
    for (const id of dropped) this.#forget(topic, id);
    return dropped.length;
  }

  retainTopics(topics: ReadonlySet<string>): number {
    let count = 0;
    for (const [topic, ids] of this.#ids.retainTopics(topics)) {
      for (const id of ids) this.#forget(topic, id);
      count += ids.length;
    }
    return count;
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

  /** Resolves when everything recorded so far is written. Never rejects: a failure is logged. */
  async flush(): Promise<void> {
    if (!this.#opened) return;
    if (this.#pendingLines.length > 0 || this.#rewriteNeeded) {
      await new Promise<void>((resolve) => {
        this.#waiters.push({ resolve, reject: () => resolve() });
        this.#kick();
      });
    }
    await this.#writing;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.flush();
    this.#opened = false;
    const file = this.#file;
    this.#file = undefined;
    await file?.close();
  }

  /** Queues the removal of an id that may be on disk. */
  #forget(topic: string, id: string): void {
    if (this.#durable.delete(topic, id)) this.#pendingLines.push(JSON.stringify(['-', topic, id]));
  }

  #kick(): void {
    if (this.#writing !== undefined) return;
    this.#writing = this.#drain().finally(() => {
      this.#writing = undefined;
      // A waiter may have come after the loop's last look and before this line.
      if (this.#waiters.length > 0) this.#kick();
    });
  }

  /** Writes batches until nothing is pending; each batch is one append and one fsync (group commit). */
  async #drain(): Promise<void> {
    while (this.#pendingLines.length > 0 || this.#waiters.length > 0) {
      const lines = this.#pendingLines;
      const waiters = this.#waiters;
      this.#pendingLines = [];
      this.#waiters = [];
      try {
        const tooLong = this.#lines + lines.length > Math.max(COMPACT_MIN_LINES, 2 * this.#durable.size());
        if (this.#rewriteNeeded || this.#file === undefined || tooLong) {
          // The durable set already lacks the removals of `lines`; add its additions, then write it whole.
          this.#markDurable(lines);
          await this.#rewrite();
        } else if (lines.length > 0) {
          await this.#append(lines);
          this.#markDurable(lines);
        }
        if (this.#failing) {
          this.#failing = false;
          this.#logger.info('the dedup record is written again', { path: this.#path });
        }
        for (const waiter of waiters) waiter.resolve();
      } catch (error) {
        this.#rewriteNeeded = true;
        if (!this.#failing) {
          this.#failing = true;
          this.#logger.error('cannot write the dedup record: events are not dispatched until it works again',
            { path: this.#path, error: messageOf(error) });
        }
        const failure = new Error(`cannot write ${this.#path}: ${messageOf(error)}`);
        for (const waiter of waiters) waiter.reject(failure);
        // The additions of this batch were not acknowledged (their dispatches do not go out and are
        // released); its removals are already out of the durable set. The next persist or flush
        // tries again with a rewrite, which needs no knowledge of what this batch left on disk.
        return;
      }
    }
  }

  /**
   * Marks the ids of the `+` lines just written as durable. One released or
   * dropped meanwhile gets its `-` line, so the file does not keep it.
   */
  #markDurable(lines: readonly string[]): void {
    for (const line of lines) {
      if (!line.startsWith('["+"')) continue;
      const [, topic, id] = JSON.parse(line) as [string, string, string];
      if (this.#ids.has(topic, id)) this.#durable.add(topic, id);
      else this.#pendingLines.push(JSON.stringify(['-', topic, id]));
    }
  }

  async #append(lines: readonly string[]): Promise<void> {
    const file = this.#file;
    if (file === undefined) throw new Error('the dedup record is closed');
    await file.appendFile(`${lines.join('\n')}\n`);
    await file.datasync();
    this.#lines += lines.length;
  }

  /** Replaces the file with the durable ids alone: temp file, fsync, rename, fsync of the directory. */
  async #rewrite(): Promise<void> {
    const temp = `${this.#path}.tmp`;
    const parts = [HEADER];
    let lines = 0;
    for (const [topic, ids] of this.#durable.entries()) {
      for (const id of ids) parts.push(JSON.stringify(['+', topic, id]));
      lines += ids.size;
    }
    const handle = await open(temp, 'w');
    try {
      await handle.writeFile(`${parts.join('\n')}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    const previous = this.#file;
    this.#file = undefined;
    await previous?.close();
    await rename(temp, this.#path);
    await syncDirectory(this.#dir);
    this.#file = await open(this.#path, 'a');
    this.#lines = lines;
    this.#rewriteNeeded = false;
  }

  /** Replays the file into memory; returns what is wrong with it, if anything. */
  #load(text: string): string | undefined {
    const lines = text.split('\n');
    // Every write ends with a newline: a last piece without one is a torn append.
    const torn = lines.pop();
    const problem = this.#replay(lines);
    if (problem === undefined && torn !== undefined && torn !== '') {
      this.#logger.warn('ignoring a torn last line of the dedup record (a crash during a write)', { path: this.#path });
    }
    return problem;
  }

  #replay(lines: readonly string[]): string | undefined {
    if (lines.length === 0) return 'no complete line';
    if (lines[0] !== HEADER) return 'the first line is not the dedup log header';
    for (let n = 1; n < lines.length; n++) {
      let entry: unknown;
      try {
        entry = JSON.parse(lines[n] ?? '');
      } catch {
        return `line ${n + 1} is not JSON`;
      }
      if (!Array.isArray(entry) || entry.length !== 3 || typeof entry[1] !== 'string' || typeof entry[2] !== 'string') {
        return `line ${n + 1} is not ["+"|"-", topic, id]`;
      }
      const [op, topic, id] = entry as [unknown, string, string];
      if (op === '+') {
        this.#ids.add(topic, id);
        this.#durable.add(topic, id);
      } else if (op === '-') {
        this.#ids.delete(topic, id);
        this.#durable.delete(topic, id);
      } else {
        return `line ${n + 1} has an unknown operation`;
      }
    }
    return undefined;
  }
}

function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 'ENOENT';
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
