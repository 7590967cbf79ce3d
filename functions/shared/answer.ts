/**
 * How an HTTP function's request is answered when the function does not answer
 * it: the one place, for the host (functions/host/) and for the Functions
 * Framework's registration alike. A body over MAX_BODY_BYTES is refused before
 * the function runs (the host's reader refuses it sooner, while it streams; the
 * framework reads it whole first). An HttpError the function throws is its
 * JSON answer with its status; anything else is a 500, with its cause in the
 * log.
 */
import type { ServerResponse } from 'node:http';
import type { EventFunction, HttpFunction, RawRequest } from './function.js';
import { bodyTooLarge, HttpError, sendError } from './http.js';

/** Answers a request the function failed. */
export function answerFailure(
  fn: HttpFunction | EventFunction,
  res: ServerResponse,
  error: unknown,
): void {
  if (error instanceof HttpError) {
    // The function logs its own failures once per streak, not once per request.
    if (error.status >= 500) fn.log.debug({ err: error }, 'request not done');
    if (!res.headersSent) sendError(res, error);
    return;
  }
  fn.log.error({ err: error }, 'function failed');
  if (!res.headersSent)
    sendError(res, new HttpError('internal', 'the function failed; see its log'));
  else res.destroy();
}

/** The function, answering for it whatever it does not answer itself. */
export function answering(fn: HttpFunction): (req: RawRequest, res: ServerResponse) => void {
  return (req, res) => {
    if ((req.rawBody?.length ?? 0) > fn.config.maxBodyBytes) {
      sendError(res, bodyTooLarge(fn.config.maxBodyBytes));
      return;
    }
    try {
      fn.handler(req, res).catch((error: unknown) => answerFailure(fn, res, error));
    } catch (error) {
      answerFailure(fn, res, error);
    }
  };
}
