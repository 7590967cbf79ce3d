import { type Env, EnvReader, LOG_LEVELS, type LogLevel } from '../../functions/shared/env.js';
import { CONSUMER_GROUP, STREAM_KEY } from '../../functions/shared/names.js';

export interface RelayConfig {
  redisUrl: string;
  streamKey: string;
  consumerGroup: string;
  consumerName: string;
  consumers: number;
  sinkUrl: string;
  logLevel: LogLevel;
}

export function loadRelayConfig(env: Env = process.env): RelayConfig {
  const r = new EnvReader(env);
  return {
    redisUrl: r.url('REDIS_URL', 'redis://127.0.0.1:6390', ['redis:', 'rediss:']),
    streamKey: r.string('STREAM_KEY', STREAM_KEY),
    consumerGroup: r.string('CONSUMER_GROUP', CONSUMER_GROUP),
    consumerName: r.string('RELAY_CONSUMER_NAME', ''),
    consumers: r.int('RELAY_CONSUMERS', 100, 1, 10_000),
    sinkUrl: r.url('PERSIST_URL', 'http://127.0.0.1:8081/', ['http:', 'https:']),
    logLevel: r.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
  };
}
