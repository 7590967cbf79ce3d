/** Waiting, for the functions and the relay. */

/**
 * The longest a function's readiness check (/readyz) waits for a backing
 * service; the platform's probe timeout must be longer (knative/*.yaml).
 */
export const READY_CHECK_MS = 2000;

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Waits for `work` at most `ms`: true if it fulfilled in time, false if the time
 * ran out first (`work` goes on; nothing cancels it). A rejection in time is
 * passed on. The timer is cleared either way.
 */
export async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(resolve, ms, false);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `work`'s outcome, or a rejection with `late()` once `ms` have passed first.
 * `work` is given a signal that aborts then, so that whatever it waits on can
 * let go (the work itself goes on; nothing cancels a command already sent).
 */
export async function deadline<T>(
  work: (signal: AbortSignal) => Promise<T>,
  ms: number,
  late: () => Error,
): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work(controller.signal),
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => {
          const error = late();
          controller.abort(error);
          reject(error);
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
