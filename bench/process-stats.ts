/** Memory and CPU of another process, read from /proc (Linux). */
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcessStats {
  /** Peak resident set size so far (VmHWM), MiB. */
  readonly peakRssMiB: number;
  /** Resident set size now (VmRSS), MiB. */
  readonly rssMiB: number;
  /** CPU time so far of all its threads (main, GC helpers, libuv pool), seconds. */
  readonly cpuSeconds: number;
}

export function processStats(pid: number): ProcessStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { peakRssMiB: kib('VmHWM') / 1024, rssMiB: kib('VmRSS') / 1024, cpuSeconds: cpuSecondsOf(pid) };
}

/**
 * Summed over /proc/<pid>/task/<tid>/schedstat, whose first field is the
 * time on a CPU in nanoseconds: /proc/<pid>/stat counts in ticks of 10 ms,
 * too coarse for an idle process (0.5 % of 10 s is 5 ticks). A thread that
 * exits between listing and reading is skipped (its time is lost: the
 * threads of an idle agent live as long as it does).
 */
function cpuSecondsOf(pid: number): number {
  let nanoseconds = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      nanoseconds += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ', 1)[0]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return nanoseconds / 1e9;
}
