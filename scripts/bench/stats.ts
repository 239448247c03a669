/** Small statistics for benchmark rounds. */

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** Fisher–Yates, in place. */
export function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

export interface Summary {
  median: number;
  p25: number;
  p75: number;
  min: number;
  max: number;
  n: number;
}

/** Median, quartiles and range of the finite values of `xs` (NaNs when there are none). */
export function summarize(xs: number[]): Summary {
  const v = xs.filter((x) => Number.isFinite(x));
  if (v.length === 0) return { median: NaN, p25: NaN, p75: NaN, min: NaN, max: NaN, n: 0 };
  return { median: median(v), p25: percentile(v, 25), p75: percentile(v, 75), min: Math.min(...v), max: Math.max(...v), n: v.length };
}
