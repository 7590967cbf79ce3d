/**
 * A process's status as data (STATUS_FILE): one JSON document, replaced as a
 * whole (written beside it, then renamed) whenever it changes, so a reader never
 * sees half of one. Tools and tests read this, not the human log lines.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

/** What a process says of itself; `npm start` adds its children. */
export interface ProcessStatus {
  pid: number;
  ready: boolean;
  /** npm start: each child's pid and readiness, by name. */
  children?: Record<string, { pid: number | undefined; ready: boolean }>;
  /** npm start: where to post events, and the rest of its URLs. */
  urls?: Record<string, string>;
}

/** Writes the status to `file` (nothing when `file` is empty). */
export function writeStatus(file: string, status: ProcessStatus): void {
  if (file === '') return;
  const next = `${file}.${process.pid}.tmp`;
  writeFileSync(next, `${JSON.stringify(status)}\n`);
  renameSync(next, file);
}

/** The status last written to `file`; undefined before the first. */
export function readStatus(file: string): ProcessStatus | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ProcessStatus;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
