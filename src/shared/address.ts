/** Pure helpers for IP addresses as they appear in users documents and iptables rules. */
import { isIP } from 'node:net';

/**
 * The canonical text of an IPv4 or IPv6 address (IPv6 compressed and lower
 * case, as iptables prints it), or undefined when `text` is not an address.
 */
export function canonicalIp(text: string): string | undefined {
  const family = isIP(text);
  if (family === 4) return text;
  if (family === 6) {
    // The WHATWG URL parser serialises IPv6 hosts the RFC 5952 way, as inet_ntop
    // does, except for the addresses inet_ntop ends with a dotted IPv4 address.
    if (text.includes('%')) return undefined;
    return withDottedTail(new URL(`http://[${text}]/`).hostname.slice(1, -1));
  }
  return undefined;
}

/**
 * glibc's inet_ntop writes the last 32 bits as a dotted IPv4 address when the
 * longest run of zero groups starts the address and is 6 groups long
 * (`::10.0.0.1`), or 5 followed by ffff (`::ffff:10.0.0.1`, IPv4-mapped);
 * ip6tables-save prints rule addresses that way.
 */
function withDottedTail(compressed: string): string {
  const match = /^::(ffff:)?([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed);
  if (match === null) return compressed;
  const high = parseInt(match[2]!, 16);
  const low = parseInt(match[3]!, 16);
  // Without ffff the zero run must be exactly 6 groups: a zero 7th group would make it longer (`::2` stays).
  if (match[1] === undefined && high === 0) return compressed;
  return `::${match[1] ?? ''}${high >> 8}.${high & 255}.${low >> 8}.${low & 255}`;
}

/**
 * The single host an address or prefix names: `10.8.0.2`, `10.8.0.2/32` and
 * `fd00::2/128` name one host; a wider prefix names none (undefined).
 */
export function hostAddress(text: string): string | undefined {
  const slash = text.indexOf('/');
  if (slash === -1) return canonicalIp(text);
  const ip = canonicalIp(text.slice(0, slash));
  if (ip === undefined) return undefined;
  const prefix = text.slice(slash + 1);
  const full = ip.includes(':') ? '128' : '32';
  return prefix === full ? ip : undefined;
}

/** True when `text` is an address or an address/prefix. */
export function isAddressOrPrefix(text: string): boolean {
  const slash = text.indexOf('/');
  if (slash === -1) return canonicalIp(text) !== undefined;
  const ip = canonicalIp(text.slice(0, slash));
  const prefix = text.slice(slash + 1);
  if (ip === undefined || !/^\d{1,3}$/.test(prefix)) return false;
  return Number(prefix) <= (ip.includes(':') ? 128 : 32);
}
