/**
 * Concurrent /metrics scrapes share one production of the body, so that
 * scrapers (however many) cannot keep the event loop from the readings.
 * Serialising 20,000 users takes a good part of a second; one production per
 * request let 32 scrapers skip readings.
 * - Requests that arrive while a production is pending or running get its body.
 * - A production starts no sooner than its predecessor's duration after that
 *   one ended: scrapes take at most about half of the agent's time.
 * - Past `maxShared` requests on one production, a request is turned away
 *   (the listener answers 503 with Retry-After).
 */
export class SharedScrapes {
  private pending: Promise<string> | undefined;
  private sharing = 0;
  /** When the next production may start. */
  private freeAt = 0;

  constructor(
    private readonly produce: () => Promise<string>,
    readonly maxShared: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The body this request gets, or undefined when too many already wait. */
  body(): Promise<string> | undefined {
    if (this.pending) {
      if (this.sharing >= this.maxShared) return undefined;
      this.sharing += 1;
      return this.pending;
    }
    this.sharing = 1;
    // At least until the end of this turn of the event loop, so that requests arriving together share.
    const delay = Math.max(0, this.freeAt - this.now());
    this.pending = new Promise<void>((resolve) => (delay > 0 ? setTimeout(resolve, delay) : setImmediate(resolve))).then(async () => {
      const started = this.now();
      try {
        return await this.produce();
      } finally {
        const ended = this.now();
        this.freeAt = ended + (ended - started);
        this.pending = undefined;
        this.sharing = 0;
      }
    });
    return this.pending;
  }
}
