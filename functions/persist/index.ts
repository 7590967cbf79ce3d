/**
 * The `persist` CloudEvent function, configured from the environment: the
 * Functions Framework's entry (`functions-framework --target=persist`), which
 * loads this module and nothing else, so it is built and started here, at
 * import. The host (functions/host/) calls createPersist itself.
 */
import { cloudEvent } from '@google-cloud/functions-framework';
import { loadPersistConfig } from './config.js';
import { createPersist } from './persist.js';

export const persist = createPersist(loadPersistConfig());

cloudEvent('persist', persist.handler);
