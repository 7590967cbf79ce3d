/**
 * The deliveries waiting on a stream entry: each is answered 2xx once its entry
 * is committed, or with DeadlineError (503: the Trigger redelivers) when it is
 * not committed in time or at all yet. A delivery is answered once.
 */
import { HttpError } from '../shared/http.js';

/** A delivery that was not committed (in time, or at all yet): the Trigger should redeliver it. */
export class DeadlineError extends HttpError {
  override name = 'DeadlineError';

  constructor(detail: string) {
    super('not_persisted', detail);
  }
}

export interface Delivery {
  resolve(): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
}

/**
 * A delivery that is answered with DeadlineError after `deadlineMs` unless it
 * is answered before (`missed` is called then); `attach` hands it to whoever
 * will answer it.
 */
export function awaitDelivery(
  deadlineMs: number,
  missed: () => void,
  attach: (delivery: Delivery) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const delivery: Delivery = { resolve, reject, timer: undefined, settled: false };
    delivery.timer = setTimeout(() => {
      if (delivery.settled) return;
      delivery.settled = true;
      missed();
      reject(
        new DeadlineError(
          `not committed within DELIVERY_DEADLINE_MS (${deadlineMs} ms); redeliver`,
        ),
      );
    }, deadlineMs);
    attach(delivery);
  });
}

/** Answers the deliveries not answered yet: 2xx. */
export function answerCommitted(deliveries: readonly Delivery[]): void {
  for (const delivery of deliveries) {
    if (delivery.settled) continue;
    delivery.settled = true;
    clearTimeout(delivery.timer);
    delivery.resolve();
  }
}

/** Answers the deliveries not answered yet with `error` (a DeadlineError: redeliver). */
export function answerNotCommitted(deliveries: readonly Delivery[], error: Error): void {
  for (const delivery of deliveries) {
    if (delivery.settled) continue;
    delivery.settled = true;
    clearTimeout(delivery.timer);
    delivery.reject(error);
  }
}
