/**
 * Kernel counters are u64. Arithmetic stays on JavaScript numbers while values
 * are below 2^53 (the fast path: no allocation) and switches to bigint, exactly,
 * for anything larger. Compare with < and > (they work across both types);
 * never with === (5 !== 5n).
 */
export type Count = number | bigint;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export function addCount(a: Count, b: Count): Count {
  if (typeof a === 'number' && typeof b === 'number') {
    const sum = a + b;
    if (sum <= MAX_SAFE) return sum;
  }
  return normalize(BigInt(a) + BigInt(b));
}

/** a - b for a >= b. */
export function subtractCount(a: Count, b: Count): Count {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return normalize(BigInt(a) - BigInt(b));
}

/** The increase of a kernel counter since the last reading; a decrease is a reset, so the new value is the increase. */
export function counterDelta(previous: Count | undefined, current: Count): Count {
  return previous === undefined || current < previous ? current : subtractCount(current, previous);
}

/** A bigint back to a number when it fits, so the fast path resumes. */
function normalize(value: bigint): Count {
  return value <= BigInt(MAX_SAFE) ? Number(value) : value;
}

/** Parses decimal digits text[start, end) (already checked to be digits) exactly. */
export function parseDigits(text: string, start: number, end: number): Count {
  if (end - start <= 15) {
    let value = 0;
    for (let i = start; i < end; i++) value = value * 10 + (text.charCodeAt(i) - 48);
    return value;
  }
  return normalize(BigInt(text.slice(start, end)));
}
