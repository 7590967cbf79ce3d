import { type CommonConfig, commonConfig } from '../../functions/shared/config.js';
import { type Env, EnvReader } from '../../functions/shared/env.js';
import { CONSUMER_GROUP } from '../../functions/shared/names.js';

export interface RelayConfig extends CommonConfig {
  consumerGroup: string;
  consumerName: string;
  consumers: number;
  sinkUrl: string;
}

export function loadRelayConfig(env: Env = process.env): RelayConfig {
  const r = new EnvReader(env);
  return {
    ...commonConfig(r),
    consumerGroup: r.string('CONSUMER_GROUP', CONSUMER_GROUP),
    consumerName: r.string('RELAY_CONSUMER_NAME', ''),
    consumers: r.int('RELAY_CONSUMERS', 100, 1, 10_000),
    sinkUrl: r.url('PERSIST_URL', 'http://127.0.0.1:8081/', ['http:', 'https:']),
  };
}
