/**
 * Ingest's metrics: every answer by status and its latency, and the receipts'
 * (status reads by state, waits by how they ended, requests waiting now).
 * Labelled counters start at 0 for every label they are known to take, so a
 * dashboard shows 0 rather than "No data" before the first one happens.
 */
import type { ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { ERROR_STATUS } from '../shared/http.js';

/** What a status read answered: a state, 404 for an event not known (any more), or no receipt of the client's. */
export const READ_STATES = ['accepted', 'persisted', 'dead', 'unknown', 'invalid'] as const;
export type ReadState = (typeof READ_STATES)[number];

/**
 * How a `Prefer: wait` ended: the event committed (201), dead-lettered, its
 * status no longer known (404 from the monitor), the time ran out (202),
 * refused (MAX_WAITERS reached: answered at once), ingest stopping, or the
 * client gone.
 */
export const WAIT_OUTCOMES = [
  'persisted',
  'dead',
  'unknown',
  'timeout',
  'refused',
  'shutdown',
  'gone',
] as const;
export type WaitOutcome = (typeof WAIT_OUTCOMES)[number];

/** Every status ingest answers with: a status read's 200, 201, 202, and each of the error catalogue's. */
const ANSWERED = [200, 201, 202, ...new Set(Object.values(ERROR_STATUS))];

/** Counts every answer by status, and times it, once it is sent (whoever sends it). */
export function requestMetrics(registry: Registry): (res: ServerResponse) => void {
  const requests = new Counter({
    name: 'spillway_ingest_requests_total',
    help: 'Ingest requests by HTTP status',
    labelNames: ['status'],
    registers: [registry],
  });
  for (const status of ANSWERED) requests.inc({ status }, 0);
  const latency = new Histogram({
    name: 'spillway_ingest_request_seconds',
    help: 'Time from the request reaching the function to its answer',
    buckets: [0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  return (res) => {
    const started = process.hrtime.bigint();
    res.once('finish', () => {
      requests.inc({ status: res.statusCode });
      latency.observe(Number(process.hrtime.bigint() - started) / 1e9);
    });
  };
}

export interface ReceiptMetrics {
  read(state: ReadState): void;
  waited(outcome: WaitOutcome): void;
}

/** The receipts' metrics; `waiting` is read at each scrape. */
export function receiptMetrics(registry: Registry, waiting: () => number): ReceiptMetrics {
  const registers = [registry];
  const reads = new Counter({
    name: 'spillway_ingest_status_reads_total',
    help: 'Status monitor reads (GET on a receipt) by the state answered (unknown and invalid: 404)',
    labelNames: ['state'],
    registers,
  });
  const waits = new Counter({
    name: 'spillway_ingest_wait_outcomes_total',
    help: 'Requests that asked to wait for the database (Prefer: wait), by how the wait ended',
    labelNames: ['outcome'],
    registers,
  });
  new Gauge({
    name: 'spillway_ingest_waiters',
    help: 'Requests waiting for their event to be committed (Prefer: wait) now',
    aggregator: 'sum',
    registers,
    collect() {
      this.set(waiting());
    },
  });
  for (const state of READ_STATES) reads.inc({ state }, 0);
  for (const outcome of WAIT_OUTCOMES) waits.inc({ outcome }, 0);
  return {
    read: (state) => reads.inc({ state }),
    waited: (outcome) => waits.inc({ outcome }),
  };
}
