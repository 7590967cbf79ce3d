import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { CONFLICTS_COLLECTION, DEAD_COLLECTION, EVENTS_COLLECTION } from '../shared/names.js';
import type { DrainRate } from './drain-rate.js';
import type { SharedBudget } from './shared-budget.js';

function writeCounters(registers: Registry[]) {
  return {
    persisted: new Counter({
      name: 'spillway_persist_events_total',
      help: 'Events committed to MongoDB, by intake',
      labelNames: ['intake'],
      registers,
    }),
    writeCommands: new Counter({
      name: 'spillway_persist_write_commands_total',
      help: 'Write commands sent to MongoDB',
      labelNames: ['collection'],
      registers,
    }),
    deadLetters: new Counter({
      name: 'spillway_persist_dead_letters_total',
      help: 'Events written to events_dead',
      registers,
    }),
    deadlines: new Counter({
      name: 'spillway_persist_deadline_misses_total',
      help: 'Deliveries answered 5xx at DELIVERY_DEADLINE_MS',
      registers,
    }),
    batchFailures: new Counter({
      name: 'spillway_persist_batch_failures_total',
      help: 'Write attempts that did not commit (retried, split or parked), by reason',
      labelNames: ['reason'],
      registers,
    }),
    duplicates: new Counter({
      name: 'spillway_persist_duplicates_total',
      help: 'Documents the database already held (a redelivery): counted as committed',
      registers,
    }),
  };
}

function eventCounters(registers: Registry[]) {
  return {
    deliveries: new Counter({
      name: 'spillway_persist_deliveries_total',
      help: 'CloudEvents received from the source (through the Trigger; locally the relay), whatever became of them',
      registers,
    }),
    conflicts: new Counter({
      name: 'spillway_persist_conflicts_total',
      help: 'Events whose (source, id) was stored before with other content: not stored, kept in events_conflicts',
      registers,
    }),
    refused: new Counter({
      name: 'spillway_persist_refused_deliveries_total',
      help: 'CloudEvents refused (400): not a RedisStreamSource event; nothing written',
      registers,
    }),
    absentEntries: new Counter({
      name: 'spillway_persist_absent_entries_total',
      help: 'Deliveries naming a stream entry that is not in the stream (persisted before, or never there): nothing written',
      registers,
    }),
    parked: new Counter({
      name: 'spillway_persist_parked_total',
      help: 'Entries not committed after MAX_COMMIT_ATTEMPTS: left in the stream, retried after PARK_MS',
      registers,
    }),
    clockSteps: new Counter({
      name: 'spillway_persist_clock_steps_total',
      help: "Steps of Redis's clock the write budget repaired (NTP, a restore onto another host)",
      registers,
    }),
  };
}

function distributions(registers: Registry[]) {
  return {
    batchDocs: new Histogram({
      name: 'spillway_persist_batch_docs',
      help: 'Documents per batch',
      buckets: [1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000],
      registers,
    }),
    commitSeconds: new Histogram({
      name: 'spillway_persist_commit_seconds',
      help: 'Time to commit one batch (insert, dead letters, ack-delete)',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    lag: new Histogram({
      name: 'spillway_persist_lag_seconds',
      help: 'From the stream entry being added (acknowledged to the client) to its commit',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    }),
    backlog: new Gauge({
      name: 'spillway_persist_backlog_entries',
      help: 'Stream length: entries not yet persisted',
      // Every worker reads the same stream: aggregated, the largest reading, not the sum.
      aggregator: 'max',
      registers,
    }),
    batchLimit: new Gauge({
      name: 'spillway_persist_batch_limit_docs',
      help: 'The largest batch now: cut while writes are slower than DB_LATENCY_TARGET_MS',
      registers,
    }),
    writeLatency: new Histogram({
      name: 'spillway_persist_write_latency_seconds',
      help: 'Time from a write command to its answer (what the adaptive budget watches)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    formSeconds: new Histogram({
      name: 'spillway_persist_form_seconds',
      help: 'Time from a grant of the write budget to its write command sent: settling the batch (its entries checked, topped up from the stream)',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    }),
    queued: new Gauge({
      name: 'spillway_persist_queued_docs',
      help: 'Documents waiting for the next batch',
      registers,
    }),
  };
}

/** The failure reasons a write can have (plan.ts's, and a split), each counted from 0. */
const FAILURE_REASONS = ['refused', 'unavailable', 'unknown', 'unexpected', 'split'] as const;

/**
 * Persist's metrics. Labelled counters start at 0 for every label they are
 * known to take, so that a dashboard shows 0 rather than "No data" before the
 * first one happens.
 */
export function createPersistMetrics(registry: Registry) {
  const registers = [registry];
  const metrics = {
    ...writeCounters(registers),
    ...eventCounters(registers),
    ...distributions(registers),
  };
  for (const intake of ['push', 'pull']) metrics.persisted.inc({ intake }, 0);
  for (const collection of [EVENTS_COLLECTION, DEAD_COLLECTION, CONFLICTS_COLLECTION])
    metrics.writeCommands.inc({ collection }, 0);
  for (const reason of FAILURE_REASONS) metrics.batchFailures.inc({ reason }, 0);
  return metrics;
}

export type PersistMetrics = ReturnType<typeof createPersistMetrics>;

/** The budget's state, read at each scrape. */
export function budgetGauges(registry: Registry, budget: SharedBudget): void {
  const registers = [registry];
  new Gauge({
    name: 'spillway_persist_write_budget_per_sec',
    help: "The database's write budget (DB_WRITE_OPS_PER_SEC): the ceiling of the shared rate",
    aggregator: 'max',
    registers,
    collect() {
      this.set(budget.ceiling);
    },
  });
  new Gauge({
    name: 'spillway_persist_write_rate_per_sec',
    help: 'Write commands per second the budget allows now (adapted to write latency)',
    aggregator: 'max',
    registers,
    collect() {
      this.set(budget.rate);
    },
  });
  new Gauge({
    name: 'spillway_persist_write_budget_shared',
    help: '1 while the budget is shared through Redis, 0 while cut off (this replica writes at its share)',
    aggregator: 'min',
    registers,
    collect() {
      this.set(budget.mode === 'shared' ? 1 : 0);
    },
  });
}

/** The stream's measured drain rate, as this replica's last report read it back (0: idle, or not known). */
export function drainRateGauge(registry: Registry, drainRate: DrainRate): void {
  new Gauge({
    name: 'spillway_persist_drain_rate_per_sec',
    help: "Entries persist takes out of the stream per second, every replica together, over the last 10 s (what ingest's Retry-After divides by)",
    aggregator: 'max',
    registers: [registry],
    collect() {
      this.set(drainRate.rate ?? 0);
    },
  });
}
