/**
 * A write budget of this process alone (the shared budget's local share while
 * Redis is away): at most `perSec` write commands a second, one at a time,
 * spaced evenly (no burst), so that no one-second window, wherever it starts,
 * holds more than `perSec` of them at the server.
 *
 * The next write may start one spacing after the previous write's answer
 * (`completed()`), not after its start: the time between the start and the
 * command reaching the server varies (a new connection, serializing a large
 * batch), and the server may count a command when it completes; spacing from
 * the answer holds for both. The spacing has 1 % slack for timer jitter.
 */

/** What a write's result says to the budget, which may adapt to it. */
export interface WriteOutcome {
  /** The database answered it (a write that throws did not). */
  answered: boolean;
  /** Its command's own latency, ms (default: the whole write's, from the grant). */
  latencyMs?: number;
  /** The documents it held (default: none known, and the largest batch does not grow). */
  docs?: number;
}

/** What a write is told at its grant. */
export interface Grant {
  /**
   * No other writer wrote since this process's previous grant: what it read of
   * the stream since then is as it was, but for its own commits.
   */
  followsOwn: boolean;
}

/** What the committer writes under: one write command at a time, within a budget. */
export interface WriteBudget {
  /**
   * Runs one write command under the budget. `outcome` reads the write's result
   * (by default: answered, whatever it holds).
   */
  run<T>(write: (grant: Grant) => Promise<T>, outcome?: (result: T) => WriteOutcome): Promise<T>;
  /** The largest batch for the next write, when the budget keeps one for every writer of the database. */
  readonly batchLimit?: number;
  /**
   * No other writer's command is in flight beside one of this budget's (the
   * shared budget while Redis answers; a budget of this process alone, which is
   * then the only writer): a write may take any entry of the stream's front.
   */
  readonly singleFlight: boolean;
}

/** The spacing's slack: the next write comes 1010/rate ms after an answer (commands/includes/budget.lua's SLACK too). */
export const SLACK_MS = 1010;

export class Spacer implements WriteBudget {
  readonly singleFlight = true;
  private next: number;
  private tail: Promise<void> = Promise.resolve();

  constructor(
    private readonly perSec: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    // The first token comes one spacing after start, not at once: a process that
    // replaces one that just stopped cannot add to the writes its predecessor
    // sent in the last second.
    this.next = now() + SLACK_MS / perSec;
  }

  /** Milliseconds until a token is free (0 = now). */
  waitMs(): number {
    return Math.max(0, this.next - this.now());
  }

  /** Takes a token if one is free now. */
  tryTake(): boolean {
    const t = this.now();
    if (t < this.next) return false;
    // A token unused for a while does not pile up: spacing is kept from now on.
    this.next = t + SLACK_MS / this.perSec;
    return true;
  }

  /** The write that took the last token has been answered: the next comes one spacing later. */
  completed(): void {
    this.next = Math.max(this.next, this.now() + SLACK_MS / this.perSec);
  }

  /**
   * Takes a token, runs one write command, and spaces the next token from its
   * answer. Calls run one at a time: one write is in flight at most.
   */
  async run<T>(write: (grant: Grant) => Promise<T>): Promise<T> {
    const previous = this.tail;
    let done = () => {};
    this.tail = new Promise<void>((resolve) => {
      done = resolve;
    });
    await previous;
    try {
      await this.take();
      // A budget of this process alone: nobody else writes.
      return await write({ followsOwn: true });
    } finally {
      this.completed();
      done();
    }
  }

  async take(): Promise<void> {
    while (!this.tryTake()) {
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(this.waitMs()))));
    }
  }
}
