// One restart at a time (ruff-vscode style): a running restart promise plus a "queued" flag.
// Requests that arrive while a restart runs collapse into one more run after it. Pure: no 'vscode' import.

export class RestartQueue {
  private running: Promise<void> | undefined;
  private queued = false;

  constructor(
    private readonly job: () => Promise<void>,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  /** Resolves once a restart that began after this call has finished (never rejects). */
  request(): Promise<void> {
    if (this.running) {
      this.queued = true;
      return this.running;
    }
    this.running = this.loop();
    return this.running;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Set by request() while the job ran (a method, so the flag is re-read after the await). */
  private requestedMeanwhile(): boolean {
    return this.queued;
  }

  private async loop(): Promise<void> {
    try {
      do {
        this.queued = false;
        try {
          await this.job();
        } catch (error) {
          this.onError(error);
        }
      } while (this.requestedMeanwhile());
    } finally {
      this.running = undefined;
    }
  }
}

/**
 * Gives up automatic restarts after `limit` unexpected exits within `windowMs` (a sidecar that dies at once
 * would otherwise restart forever); returns the delay before the next automatic restart, or undefined.
 */
export class CrashBudget {
  private readonly times: number[] = [];

  constructor(private readonly limit = 5, private readonly windowMs = 180_000, private readonly baseDelayMs = 250) {}

  nextDelay(now = Date.now()): number | undefined {
    for (let first = this.times[0]; first !== undefined && now - first > this.windowMs; first = this.times[0]) {
      this.times.shift();
    }
    this.times.push(now);
    if (this.times.length > this.limit) return undefined;
    return this.baseDelayMs * 2 ** (this.times.length - 1);
  }

  reset(): void {
    this.times.length = 0;
  }
}
