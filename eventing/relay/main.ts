/**
 * `node dist/eventing/relay/main.js`: runs the local relay from the environment.
 * SIGTERM/SIGINT stop it gracefully (the group is destroyed, as the source does).
 */
import { hostname } from 'node:os';
import { runIfEntryPoint } from '../../functions/shared/entrypoint.js';
import { createLogger } from '../../functions/shared/logger.js';
import {
  createRedis,
  requireRedisVersion,
  watchConnection,
} from '../../functions/shared/redis/client.js';
import { writeStatus } from '../../functions/shared/status.js';
import { loadRelayConfig } from './config.js';
import { Relay } from './relay.js';

async function main(): Promise<void> {
  const config = loadRelayConfig();
  const log = createLogger('relay', config.logLevel);
  const redis = createRedis(config.redisUrl, {
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
  });
  watchConnection(redis, log);
  requireRedisVersion(redis, log);
  const url = new URL(config.redisUrl);
  const relay = new Relay({
    redis,
    redisAddress: `${url.hostname}:${url.port || 6379}`,
    streamKey: config.streamKey,
    consumerGroup: config.consumerGroup,
    consumerName: config.relayConsumerName || `relay-${hostname()}`,
    consumers: config.relayConsumers,
    sinkUrl: config.persistUrl,
    log,
  });
  await relay.start();
  log.info(
    { sink: config.persistUrl, consumers: config.relayConsumers, group: config.consumerGroup },
    'relay started',
  );
  writeStatus(config.statusFile, { pid: process.pid, ready: true });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    relay.stop(config.shutdownTimeoutMs).then(
      () => {
        log.info(relay.stats, 'relay stopped');
        redis.disconnect();
        process.exit(0);
      },
      (error) => {
        log.error({ err: error }, 'relay stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

runIfEntryPoint(import.meta.url, 'relay', main);
