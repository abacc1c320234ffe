/**
 * Pure: what each field of the users document accepts, as predicates that
 * build no message (the document's two readers, document.ts and
 * document-scan.ts, share them; only document.ts words the errors).
 */
import { canonicalIp, hostAddress, isAddressOrPrefix } from '../shared/address.js';
import { parseU32 } from '../shared/u32.js';

/** A user_code or user_name: a string with something besides white space. */
export function isName(value: unknown): value is string {
  return typeof value === 'string' && value.trim() !== '';
}

/** A user_intra_ip's canonical form: a bare IPv4 or IPv6 address (no prefix); undefined when it is none. */
export function userIp(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (isDottedQuad(value)) return value;
  return value.includes('/') ? undefined : canonicalIp(value);
}

/** A mark_id: an integer from 0 to 2^32-1, or a string of one (decimal or 0x hex, around white space). */
export function markId(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 && value <= 0xffffffff ? value : undefined;
  if (typeof value === 'string') return parseU32(value.trim().toLowerCase());
  return undefined;
}

/** An item of sips/dips: an address or a prefix. */
export function isPoolAddress(value: unknown): value is string {
  return typeof value === 'string' && (isDottedQuad(value) || isAddressOrPrefix(value));
}

/** The single host a pool address names (see hostAddress), without a regular expression for the usual dotted quad. */
export function poolHost(address: string): string | undefined {
  return isDottedQuad(address) ? address : hostAddress(address);
}

/**
 * Whether `text` is an IPv4 address in the one form node's isIP accepts:
 * four decimal numbers up to 255, no leading zeros. A gateway's document
 * holds hundreds of thousands of them; this is the fast road to the same
 * answer (anything it refuses still goes through canonicalIp).
 */
export function isDottedQuad(text: string): boolean {
  const end = text.length;
  if (end < 7 || end > 15) return false;
  let i = 0;
  for (let part = 0; part < 4; part++) {
    if (part > 0) {
      if (text.charCodeAt(i) !== 46 /* . */) return false;
      i++;
    }
    const start = i;
    let value = 0;
    while (i < end && i - start < 3) {
      const c = text.charCodeAt(i);
      if (c < 48 || c > 57) break;
      value = value * 10 + (c - 48);
      i++;
    }
    const digits = i - start;
    if (digits === 0 || value > 255 || (digits > 1 && text.charCodeAt(start) === 48)) return false;
  }
  return i === end;
}
