/**
 * How old the client's data is (protocol v2, docs/protocol.md "Protocol v2"), without trusting
 * the two clocks to agree. No I/O: times are passed in, in seconds.
 *
 * Each SYNC and BEACON says `as_of` (server time the data is current as of) and `age` (how old
 * it already was when sent), so `as_of + age` is the server's clock at sending. The smallest
 * gap seen between that and this clock at receipt estimates the offset between the clocks
 * (frames that waited only show larger gaps); the data's age is then the server's estimated
 * time now minus `as_of`. The smallest gap is taken over the last 15 s (three 5 s buckets), so
 * a server clock stepped back is followed within 15 s; times that are not finite, a negative
 * age or one over a day are not believed.
 */
export class Freshness {
  /** Seconds between beacons the server promised (null: a v1 link, no ages). */
  interval: number | null = null;
  private offset: number | null = null; // local clock minus server clock, at best
  private buckets: { start: number; min: number }[] = []; // the smallest gap per 5 s
  private asOf: number | null = null;
  private heardAt = 0;
  private renewed = false;

  /** A new connection (`interval` from its WELCOME; null on v1). */
  connected(interval: number | null, now: number): void {
    this.interval = interval;
    this.heardAt = now;
    // (another server, or a gateway, has its own clock and may be behind the last one: its
    // first frame sets both anew; until then the age keeps growing from the last ones)
    this.renewed = true;
    if (interval === null) this.asOf = this.offset = null;
  }

  private sample(now: number, gap: number): void {
    const last = this.buckets[this.buckets.length - 1];
    if (last !== undefined && now - last.start < BUCKET) last.min = Math.min(last.min, gap);
    else this.buckets.push({ start: now, min: gap });
    while (this.buckets.length > 0 && now - (this.buckets[0] as { start: number }).start > BUCKET * BUCKETS) this.buckets.shift();
    let min = gap;
    for (const b of this.buckets) min = Math.min(min, b.min);
    this.offset = min;
  }

  /** Anything arrived on the link. */
  heard(now: number): void {
    this.heardAt = now;
  }

  /** A SYNC or BEACON arrived at `now` saying `asOf` and `age`. */
  observe(now: number, asOf: number, age: number): void {
    if (!Number.isFinite(asOf) || !Number.isFinite(age) || age < 0 || age > MAX_AGE) return;
    const gap = now - (asOf + age);
    if (this.renewed) {
      this.renewed = false;
      this.buckets = [];
    }
    this.sample(now, gap);
    this.asOf = asOf; // (the latest frame's: frames come in order)
  }

  /** The server time the data is current as of (null before the first v2 frame). */
  get currentAsOf(): number | null {
    return this.asOf;
  }

  /** Seconds the data is old now (null on a v1 link or before the first v2 frame). */
  age(now: number): number | null {
    if (this.interval === null || this.asOf === null || this.offset === null) return null;
    return Math.max(0, now - this.offset - this.asOf);
  }

  /** Seconds of silence after which a v2 link counts as dead: 3 beacon intervals, at least 2 s. */
  get deadAfter(): number | null {
    return this.interval === null ? null : Math.max(3 * this.interval, 2);
  }

  /** True when a v2 link has been silent past {@link deadAfter}. */
  dead(now: number): boolean {
    const limit = this.deadAfter;
    return limit !== null && now - this.heardAt > limit;
  }
}

const BUCKET = 5;
const BUCKETS = 3;
const MAX_AGE = 86_400;

/** Reconnect delays: exponential from `initial` to `max` seconds, with jitter. */
export class Backoff {
  readonly initial: number;
  readonly max: number;
  constructor(initial = 0.25, max = 10) {
    this.initial = initial;
    this.max = max;
  }
  /** The delay before attempt `attempt` (1, 2, ...), in seconds; `random` in [0, 1). */
  delay(attempt: number, random: number): number {
    const base = Math.min(this.max, this.initial * 2 ** Math.max(0, attempt - 1));
    return base * (0.5 + random / 2);
  }
}
