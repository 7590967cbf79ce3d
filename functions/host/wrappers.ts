/**
 * One wrapper per function signature, as the Functions Framework has them:
 * each turns a request into a call of the function and its outcome into the
 * answer. Errors the function throws are answered by functions/shared/answer.ts:
 * an HttpError keeps its status; anything else is a 500 with its cause in the log.
 */
import type { ServerResponse } from 'node:http';
import { HTTP } from 'cloudevents';
import { answerFailure, answering } from '../shared/answer.js';
import type { EventFunction, HttpFunction, RawRequest } from '../shared/function.js';
import { ClientError, sendError } from '../shared/http.js';

export type Listener = (req: RawRequest, res: ServerResponse) => void;

/** The function answers the request itself; what it does not answer, the shared wrapper does. */
export const httpWrapper = (fn: HttpFunction): Listener => answering(fn);

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
      (error: unknown) => answerFailure(fn, res, error),
    );
  };
}
