/**
 * Pure parsers of the two tc outputs the TC source reads (no I/O): `tc -s class show dev X`
 * (class-stats.ts: every class and its exact counters) and `tc filter show dev X` (filters.ts:
 * which user, by address or mark, each filter ties a class to).
 */
export { parseClassStats, type TcClass, type TcClassCounters } from './class-stats.js';
export { parseFilters, type TcAddressFilter, type TcFilter, type TcMarkFilter, type TcUntiedFilter } from './filters.js';
