/** Pure: 32-bit unsigned values as iptables prints them and the users document writes them. */

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** A 32-bit unsigned value written as `0x` hex (1-8 digits) or decimal; undefined when it is not one. */
export function parseU32(text: string, start = 0, end = text.length): number | undefined {
  let value = 0;
  if (end - start > 2 && text.charCodeAt(start) === 48 && (text.charCodeAt(start + 1) | 32) === 120 /* 0x */) {
    if (end - start - 2 > 8) return undefined;
    for (let i = start + 2; i < end; i++) {
      const c = text.charCodeAt(i) | 32;
      const digit = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1;
      if (digit < 0) return undefined;
      value = value * 16 + digit;
    }
    return value;
  }
  if (end === start || end - start > 10) return undefined;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (!isDigit(c)) return undefined;
    value = value * 10 + (c - 48);
  }
  return value <= 0xffffffff ? value : undefined;
}
