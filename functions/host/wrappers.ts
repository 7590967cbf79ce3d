/**
 * One wrapper per function signature, as the Functions Framework has them:
 * each turns a request into a call of the function and its outcome into the
 * answer. Errors the function throws as HttpError keep their status; anything
 * else is a 500 with its cause in the log.
 */
import type { ServerResponse } from 'node:http';
import { HTTP } from 'cloudevents';
import type { EventFunction, HttpFunction, RawRequest } from '../shared/function.js';
import { ClientError, HttpError, sendError } from '../shared/http.js';

export type Listener = (req: RawRequest, res: ServerResponse) => void;

function fail(fn: HttpFunction | EventFunction, res: ServerResponse, error: unknown): void {
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

/** The function answers the request itself. */
export function httpWrapper(fn: HttpFunction): Listener {
  return (req, res) => {
    try {
      fn.handler(req, res).catch((error: unknown) => fail(fn, res, error));
    } catch (error) {
      fail(fn, res, error);
    }
  };
}

/**
 * A CloudEvent in binary or structured mode (decoded by the CloudEvents SDK),
 * POSTed; 204 once the function resolved.
 */
export function cloudEventWrapper(fn: EventFunction): Listener {
  return (req, res) => {
    if (req.method !== 'POST') {
      sendError(
        res,
        new ClientError('method_not_allowed', 'deliver CloudEvents with POST', { allow: 'POST' }),
      );
      return;
    }
    let event: ReturnType<typeof HTTP.toEvent>;
    try {
      event = HTTP.toEvent({
        headers: req.headers as Record<string, string>,
        body: (req.rawBody ?? Buffer.alloc(0)).toString('utf8'),
      });
    } catch (error) {
      sendError(
        res,
        new ClientError('invalid_cloudevent', `not a CloudEvent: ${(error as Error).message}`),
      );
      return;
    }
    if (Array.isArray(event)) {
      sendError(res, new ClientError('invalid_cloudevent', 'deliver one CloudEvent per request'));
      return;
    }
    fn.handler(event).then(
      () => {
        res.writeHead(204);
        res.end();
      },
      (error: unknown) => fail(fn, res, error),
    );
  };
}
