/**
 * What a Spillway function module exports for the host (functions/host/): one
 * typed object with its handler, its configuration, its metrics registry and its
 * lifecycle. The same handler is registered with the Functions Framework
 * (`http('ingest', …)`, `cloudEvent('persist', …)`), so `functions-framework
 * --target=…` serves it unchanged.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CloudEventV1 } from 'cloudevents';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';
import type { ServiceConfig } from './settings.js';

/** A request whose body the host has read (at most the function's MAX_BODY_BYTES). */
export type RawRequest = IncomingMessage & { rawBody?: Buffer };

interface Lifecycle {
  config: ServiceConfig;
  registry: Registry;
  log: Logger;
  /** Readiness: its backing services answer. */
  ready(): Promise<boolean>;
  /** Resolves once its backing services answer (or after timeoutMs): the host listens then. */
  whenReady?(timeoutMs: number): Promise<void>;
  /** Finishes the work it holds (bounded by its SHUTDOWN_TIMEOUT_MS), while requests in flight end. */
  drain?(): Promise<void>;
  /** Closes its clients. */
  shutdown(): Promise<void>;
}

export interface HttpFunction extends Lifecycle {
  signature: 'http';
  handler(req: RawRequest, res: ServerResponse): Promise<void>;
}

/** Resolves once the event is handled (the host answers 2xx); an HttpError rejects with its status. */
export interface EventFunction extends Lifecycle {
  signature: 'cloudevent';
  handler(event: CloudEventV1<unknown>): Promise<void>;
}

export type SpillwayFunction = HttpFunction | EventFunction;
