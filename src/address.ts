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
    // The WHATWG URL parser serialises IPv6 hosts the RFC 5952 way, like inet_ntop.
    if (text.includes('%')) return undefined;
    return new URL(`http://[${text}]/`).hostname.slice(1, -1);
  }
  return undefined;
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
