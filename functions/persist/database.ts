/**
 * Persist's database client, and its connection, made again until it is made.
 *
 * The mongodb driver (v7) connects a client at its first operation, or at
 * `connect()`. When that connect finds no server within
 * serverSelectionTimeoutMS, it closes the topology it made but leaves it on
 * the client; every later operation runs on that closed topology and fails at
 * once with "Topology is closed" (a MongoTopologyClosedError; for insertMany a
 * MongoBulkWriteError with that message). The client never tries again by
 * itself, however long the server has been back. `connect()` replaces a
 * topology that is not connected with a new one, so persist connects the
 * client itself, and again after every failure, until one succeeds. A
 * connected topology follows its server through restarts and outages by
 * itself (its monitor), and only `close()` closes it.
 */
import { MongoClient } from 'mongodb';
import type { Logger } from '../shared/logger.js';
import type { PersistConfig } from './config.js';

/** The pause between a failed connect (which took up to serverSelectionTimeoutMS) and the next. */
export const CONNECT_PAUSE_MS = 1000;

/**
 * The client (made from the configuration when not `given`), and its
 * connecting, begun now: before persist runs anything on it.
 */
export function connectMongo(
  config: PersistConfig,
  log: Logger,
  given?: MongoClient,
): { mongo: MongoClient; connecting: Connecting } {
  const mongo =
    given ??
    new MongoClient(config.mongodbUrl, {
      maxPoolSize: 4,
      serverSelectionTimeoutMS: 5000,
      socketTimeoutMS: config.mongoTimeoutMs,
    });
  return { mongo, connecting: keepConnecting(mongo, log) };
}

export interface Connecting {
  /** Resolves true once the client is connected, false when stopped before. */
  readonly connected: Promise<boolean>;
  /** Connects no more (before the client is closed: a connect after close() would open it again). */
  stop(): void;
  /** stop() was called: nothing more is to be started on the client. */
  readonly stopped: boolean;
}

/**
 * Connects `client`, and again `pauseMs` after each failure, until it is
 * connected or stopped. Operations meanwhile wait for the connect in flight, or
 * fail at once between two (not committed: retried).
 */
export function keepConnecting(
  client: MongoClient,
  log: Logger,
  pauseMs = CONNECT_PAUSE_MS,
): Connecting {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  const pause = () =>
    new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, pauseMs);
    });
  const connected = (async () => {
    for (let attempt = 0; !stopped; attempt++) {
      try {
        await client.connect();
        if (attempt > 0) log.info({ attempts: attempt + 1 }, 'database connected');
        return true;
      } catch (error) {
        if (stopped) break;
        if (attempt === 0) log.warn({ err: error }, 'database not reachable yet; connecting again');
        await pause();
      }
    }
    return false;
  })();
  return {
    connected,
    stop() {
      stopped = true;
      clearTimeout(timer);
      wake?.();
    },
    get stopped() {
      return stopped;
    },
  };
}
