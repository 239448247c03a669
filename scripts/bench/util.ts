/** Small helpers of the control-plane benchmark. */
import os from 'node:os';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
export const round = (x: number, digits = 3) => Math.round(x * 10 ** digits) / 10 ** digits;
export const loadavg = () => os.loadavg().map((x) => round(x, 2));

/** Runs `fn` on every item, at most `n` at a time; the first error stops new work and is thrown once the running ones end. */
export async function pool<T, R>(items: T[], n: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const errors: unknown[] = [];
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length && errors.length === 0) {
        const i = next++;
        try {
          out[i] = await fn(items[i]!, i);
        } catch (e) {
          errors.push(e);
        }
      }
    }),
  );
  if (errors.length > 0) throw errors[0];
  return out;
}
