import { pino } from 'pino';
import type { LogLevel } from './env.js';

/** Structured JSON logs: one line per event worth knowing, never one per request at info. */
export function createLogger(name: string, level: LogLevel) {
  return pino({ name, level, base: { pid: process.pid, fn: name } });
}

export type Logger = ReturnType<typeof createLogger>;
