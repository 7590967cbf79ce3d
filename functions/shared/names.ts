/** Names every part agrees on (docs/architecture.md). */
export const STREAM_KEY = 'spillway:events';
export const CONSUMER_GROUP = 'spillway-persist';
export const DATABASE = 'spillway';
export const EVENTS_COLLECTION = 'events';
export const DEAD_COLLECTION = 'events_dead';
/** Events whose (source, id) was stored before with other content: the first stays, these are kept here. */
export const CONFLICTS_COLLECTION = 'events_conflicts';
/** The event type RedisStreamSource gives every entry it emits. */
export const SOURCE_EVENT_TYPE = 'dev.knative.sources.redisstream';
