/**
 * Where relayed events go that will never be delivered: those refused for
 * good by the control plane (400, 404, 413, 415, 422 …) and those still not
 * delivered when the age cap (OUTBOX_MAX_AGE) ran out. With STATE_DIR they
 * are appended to `<STATE_DIR>/dead-letter.jsonl`, one JSON object per line,
 * so they can be inspected or replayed; without it the whole event is logged
 * at error level instead.
 */
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.ts';

export const DEAD_LETTER_FILE = 'dead-letter.jsonl';

export interface DeadLetter {
  /** The event's JSON text, as it would have been sent. */
  readonly json: string;
  readonly acceptedAt: number;
  readonly reason: string;
  /** The control plane's status, for a final rejection. */
  readonly status?: number;
}

export interface DeadLetters {
  /** Where they go, for log lines. */
  readonly location: string;
  /** Resolves once the event is recorded. */
  write(letter: DeadLetter): Promise<void>;
}

/** One line of `dead-letter.jsonl`. */
function line(letter: DeadLetter, now: Date): string {
  const status = letter.status === undefined ? '' : `,"status":${letter.status}`;
  return `{"deadLetteredAt":${JSON.stringify(now.toISOString())},"acceptedAt":${JSON.stringify(new Date(letter.acceptedAt).toISOString())},` +
    `"reason":${JSON.stringify(letter.reason)}${status},"event":${letter.json}}\n`;
}

export class FileDeadLetters implements DeadLetters {
  readonly location: string;
  readonly #dir: string;
  #chain: Promise<void> = Promise.resolve();

  constructor(dir: string) {
    this.#dir = dir;
    this.location = join(dir, DEAD_LETTER_FILE);
  }

  write(letter: DeadLetter): Promise<void> {
    // One append at a time, so lines never interleave.
    const written = this.#chain.then(async () => {
      await mkdir(this.#dir, { recursive: true });
      const file = await open(this.location, 'a');
      try {
        await file.write(line(letter, new Date()));
        await file.datasync();
      } finally {
        await file.close();
      }
    });
    this.#chain = written.catch(() => undefined);
    return written;
  }
}

/** Without STATE_DIR there is no file: the full event goes to the log, at error level. */
export class LogDeadLetters implements DeadLetters {
  readonly location = 'the log (no STATE_DIR)';
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  write(letter: DeadLetter): Promise<void> {
    this.#logger.error('dead letter: a relayed event that will not be delivered (no STATE_DIR, so it is logged in full here)', {
      reason: letter.reason,
      ...(letter.status !== undefined && { status: letter.status }),
      acceptedAt: new Date(letter.acceptedAt).toISOString(),
      event: JSON.parse(letter.json) as unknown,
    });
    return Promise.resolve();
  }
}
