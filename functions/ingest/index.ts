/**
 * The `ingest` HTTP function, configured from the environment: the Functions
 * Framework's entry (`functions-framework --target=ingest`), which loads this
 * module and nothing else, so it is built here, at import, and registered with
 * the same wrapper the host answers through (functions/shared/answer.ts). The
 * host (functions/host/) calls createIngest itself.
 */
import { http } from '@google-cloud/functions-framework';
import { answering } from '../shared/answer.js';
import { loadIngestConfig } from './config.js';
import { createIngest } from './ingest.js';

export const ingest = createIngest(loadIngestConfig());

http('ingest', answering(ingest));
