/**
 * Reads a request's body into `req.rawBody`, never more than the function's
 * MAX_BODY_BYTES: a larger declared length is refused before reading, and a
 * stream that grows past the cap is answered 413 and no longer read.
 */
import type { ServerResponse } from 'node:http';
import type { RawRequest } from '../shared/function.js';
import { bodyTooLarge, sendError } from '../shared/http.js';

const EMPTY = Buffer.alloc(0);

function tooLarge(res: ServerResponse, maxBodyBytes: number): void {
  sendError(res, bodyTooLarge(maxBodyBytes));
}

/** Runs `next` once the body (at most maxBodyBytes) is in req.rawBody. */
export function withBody(
  maxBodyBytes: number,
  next: (req: RawRequest, res: ServerResponse) => void,
): (req: RawRequest, res: ServerResponse) => void {
  return (req, res) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > maxBodyBytes)
      return tooLarge(res, maxBodyBytes);
    if (
      declared === '0' ||
      (declared === undefined && req.headers['transfer-encoding'] === undefined)
    ) {
      req.rawBody = EMPTY;
      return next(req, res);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > maxBodyBytes) {
        over = true;
        tooLarge(res, maxBodyBytes);
        req.pause();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (over) return;
      req.rawBody = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
      next(req, res);
    });
  };
}
