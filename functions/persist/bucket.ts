/**
 * The database's write budget: at most `perSec` tokens a second, spaced evenly
 * (no burst), so no one-second window, wherever it starts, holds more than
 * `perSec` write commands. The spacing has 1 % slack so that scheduling jitter on
 * the way to the server cannot squeeze one command too many into a window.
 */
export class TokenBucket {
  private next = 0;

  constructor(
    private readonly perSec: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Milliseconds until a token is free (0 = now). */
  waitMs(): number {
    return Math.max(0, this.next - this.now());
  }

  /** Takes a token if one is free now. */
  tryTake(): boolean {
    const t = this.now();
    if (t < this.next) return false;
    // A token unused for a while does not pile up: spacing is kept from now on.
    this.next = t + 1010 / this.perSec;
    return true;
  }

  async take(signal?: AbortSignal): Promise<void> {
    while (!this.tryTake()) {
      if (signal?.aborted) throw new Error('aborted');
      await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(this.waitMs()))));
    }
  }
}
