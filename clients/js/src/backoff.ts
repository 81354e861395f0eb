/**
 * backoff is the wait in ms before retry attempt n (0 for the first):
 * exponential from base, capped at max, with equal jitter (half fixed, half
 * random) so a gateway restart does not bring every client back in the same
 * instant. The same policy as shared/backoff with Jitter: Equal.
 */
export function backoff(n: number, base: number, max: number, random: () => number = Math.random): number {
  const d = Math.min(max, base * 2 ** Math.max(0, Math.min(n, 30)));
  return d <= 0 ? 0 : d / 2 + random() * (d / 2);
}
