/** Waiting, for the functions and the relay. */

/**
 * The longest a function's readiness check (/readyz) waits for a backing
 * service; the platform's probe timeout must be longer (knative/*.yaml).
 */
export const READY_CHECK_MS = 2000;

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Calls `expire` once `ms` have passed and the input and output that was
 * already there by then has been read. A process busy for longer than `ms`
 * (a large batch converted, a garbage collection) fires its timers before it
 * reads its sockets: an answer that arrived in time is still waiting there,
 * and must not be taken for one that did not come. Timers run before the
 * event loop's poll for I/O, setImmediate after it. Returns a cancel.
 */
export function timeout(ms: number, expire: () => void): () => void {
  let immediate: NodeJS.Immediate | undefined;
  const timer = setTimeout(() => {
    immediate = setImmediate(expire);
  }, ms);
  return () => {
    clearTimeout(timer);
    if (immediate) clearImmediate(immediate);
  };
}

/**
 * Waits for `work` at most `ms`: true if it fulfilled in time, false if the time
 * ran out first (`work` goes on; nothing cancels it). A rejection in time is
 * passed on. The timer is cleared either way.
 */
export async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  let cancel = () => {};
  try {
    return await Promise.race([
      work.then(() => true),
      new Promise<boolean>((resolve) => {
        cancel = timeout(ms, () => resolve(false));
      }),
    ]);
  } finally {
    cancel();
  }
}

/**
 * `work`'s outcome, or a rejection with `late()` once `ms` have passed first.
 * Given as a function, `work` is given a signal that aborts then, so that
 * whatever it waits on can let go (the work itself goes on; nothing cancels a
 * command already sent); given as a promise (nothing to let go: a command's
 * answer), no signal is made, which keeps a call on the request path cheap.
 */
export async function deadline<T>(
  work: Promise<T> | ((signal: AbortSignal) => Promise<T>),
  ms: number,
  late: () => Error,
): Promise<T> {
  let controller: AbortController | undefined;
  let answer = work as Promise<T>;
  if (typeof work === 'function') {
    controller = new AbortController();
    answer = work(controller.signal);
  }
  let cancel = () => {};
  try {
    return await Promise.race([
      answer,
      new Promise<never>((_resolve, reject) => {
        cancel = timeout(ms, () => {
          const error = late();
          controller?.abort(error);
          reject(error);
        });
      }),
    ]);
  } finally {
    cancel();
  }
}
