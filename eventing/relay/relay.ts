/**
 * The local relay: stands in for RedisStreamSource + Broker + Trigger on one
 * machine, with the same observable behaviour, so that persist runs unchanged.
 * Each part says which behaviour of knative-extensions/eventing-redis's source
 * (pkg/source/adapter) it mirrors.
 */
import { Agent, request } from 'node:http';
import { CloudEvent, HTTP } from 'cloudevents';
import type { Redis } from 'ioredis';
import { sourceEventFor } from '../../functions/shared/entry.js';
import type { Logger } from '../../functions/shared/logger.js';
import { watchConnection } from '../../functions/shared/redis/client.js';

export interface RelayOptions {
  redis: Redis;
  /** Address the source names in its CloudEvent `source` (`<address>/<stream>`). */
  redisAddress: string;
  streamKey: string;
  consumerGroup: string;
  consumerName: string;
  /** Deliveries in flight at most (the source: pods × numConsumers goroutines). */
  consumers: number;
  sinkUrl: string;
  log: Logger;
  /** Attempts after the first send (the source: 5). */
  retries?: number;
  /** First backoff, doubled each retry (the source: 50 ms, exponential). */
  backoffMs?: number;
  sendTimeoutMs?: number;
}

export interface RelayStats {
  delivered: number;
  /** Sent, failed every retry, and acknowledged anyway (as the source does). */
  dropped: number;
  /** Pending entries that came back without fields (deleted before being acked). */
  deletedPending: number;
}

type Entry = [string, string[] | null];

export class Relay {
  readonly stats: RelayStats = { delivered: 0, dropped: 0, deletedPending: 0 };
  private readonly agent: Agent;
  private readonly sink: URL;
  private inFlight = 0;
  private stopping = false;
  private loop: Promise<void> | undefined;
  private slotFree: (() => void) | undefined;
  private readonly reader: Redis;

  constructor(private readonly options: RelayOptions) {
    this.agent = new Agent({ keepAlive: true, maxSockets: options.consumers });
    this.sink = new URL(options.sinkUrl);
    // Blocking reads get their own connection, like each consumer of the source.
    this.reader = options.redis.duplicate();
    watchConnection(this.reader, options.log, 'redis (reader)');
  }

  /** Creates the group the way the source does: at `$`, so older entries are never delivered by it. */
  async start(): Promise<void> {
    try {
      await this.options.redis.xgroup(
        'CREATE',
        this.options.streamKey,
        this.options.consumerGroup,
        '$',
        'MKSTREAM',
      );
    } catch (error) {
      if (!String((error as Error).message).includes('BUSYGROUP')) throw error;
    }
    this.loop = this.run();
  }

  /**
   * Graceful stop: no more reads, in-flight sends finish, then the group is
   * destroyed, as the adapter does at the end of its Start (XGROUP DESTROY). What
   * is added while no group exists is only ever persisted by persist's sweeper.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopping = true;
    this.reader.disconnect();
    await this.loop?.catch(() => undefined);
    // In-flight sends may finish; past the timeout they are abandoned unacked (their
    // entries stay in the stream, and the group goes anyway, as the source's does).
    const deadline = performance.now() + timeoutMs;
    while (this.inFlight > 0 && performance.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    this.agent.destroy();
    await this.options.redis
      .xgroup('DESTROY', this.options.streamKey, this.options.consumerGroup)
      .catch(() => undefined);
  }

  private async run(): Promise<void> {
    // On start the source first re-reads its own pending entries ("0"), then new ones (">").
    let pendingDone = false;
    let pendingFrom = '0';
    while (!this.stopping) {
      const free = this.options.consumers - this.inFlight;
      if (free <= 0) {
        await new Promise<void>((resolve) => {
          this.slotFree = resolve;
        });
        continue;
      }
      let entries: Entry[];
      try {
        const args: Array<string | number> = [
          'GROUP',
          this.options.consumerGroup,
          this.options.consumerName,
          'COUNT',
          free,
        ];
        if (pendingDone) args.push('BLOCK', 1000);
        args.push('STREAMS', this.options.streamKey, pendingDone ? '>' : pendingFrom);
        const reply = (await this.reader.call('XREADGROUP', ...args)) as Array<
          [string, Entry[]]
        > | null;
        entries = reply?.[0]?.[1] ?? [];
      } catch (error) {
        if (this.stopping) return;
        const message = String((error as Error).message);
        if (message.includes('NOGROUP')) {
          // Like the source, a missing group is an error until it is made again.
          this.options.log.error(
            { stream: this.options.streamKey },
            'consumer group is gone (NOGROUP); recreating it',
          );
          await this.options.redis
            .xgroup('CREATE', this.options.streamKey, this.options.consumerGroup, '$', 'MKSTREAM')
            .catch(() => undefined);
        } else {
          this.options.log.warn({ err: error }, 'XREADGROUP failed');
        }
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (!pendingDone) {
        if (entries.length === 0) {
          pendingDone = true;
          continue;
        }
        pendingFrom = (entries.at(-1) as Entry)[0];
      }
      for (const entry of entries) this.dispatch(entry);
    }
  }

  private dispatch([id, fields]: Entry): void {
    if (fields === null) {
      // The real adapter's reply parser fails on a deleted pending entry and retries
      // it forever (a stalled consumer). Persist acks before it deletes, so this must
      // never happen; it is counted and logged loudly, then acked to keep going.
      this.stats.deletedPending++;
      this.options.log.error(
        { id },
        'pending entry was deleted before being acked: the real source would stall here',
      );
      void this.ack(id);
      return;
    }
    this.inFlight++;
    this.deliver(id, fields)
      .then((ok) => {
        if (ok) this.stats.delivered++;
        else this.stats.dropped++;
        // The source acks after the send attempt, even when every retry failed.
        return this.ack(id);
      })
      .catch((error) => this.options.log.warn({ err: error, id }, 'ack failed'))
      .finally(() => {
        this.inFlight--;
        this.slotFree?.();
        this.slotFree = undefined;
      });
  }

  private async ack(id: string): Promise<void> {
    await this.options.redis.xack(this.options.streamKey, this.options.consumerGroup, id);
  }

  /** One event per HTTP request, CloudEvents binary mode; 5 retries, backoff 50 ms doubling. */
  private async deliver(id: string, fields: string[]): Promise<boolean> {
    const message = HTTP.binary(
      new CloudEvent(sourceEventFor(id, fields, this.options.redisAddress, this.options.streamKey)),
    );
    const body = Buffer.from(message.body as string);
    const headers = {
      ...(message.headers as Record<string, string>),
      'content-length': String(body.length),
    };
    const retries = this.options.retries ?? 5;
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (attempt > 0)
        await new Promise((r) =>
          setTimeout(r, (this.options.backoffMs ?? 50) * 2 ** (attempt - 1)),
        );
      const status = await this.send(headers, body).catch(() => 0);
      if (status >= 200 && status < 300) return true;
    }
    this.options.log.warn(
      { id, attempts: retries + 1 },
      'delivery failed; acknowledging it anyway, as the source does',
    );
    return false;
  }

  private send(headers: Record<string, string>, body: Buffer): Promise<number> {
    return new Promise((resolve, reject) => {
      const req = request(
        this.sink,
        {
          method: 'POST',
          headers,
          agent: this.agent,
          timeout: this.options.sendTimeoutMs ?? 60_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('send timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }
}
