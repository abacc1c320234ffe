/**
 * Plain counters the agent keeps about itself. They live here, not in SDK
 * instruments, so they survive a rebuild of the MeterProvider and never go back.
 */

export interface SourceStats {
  durationSeconds: number;
  success: boolean;
  rulesParsed: number;
  markRules: number;
  skippedAmbiguous: number;
  skippedUnreached: number;
}

export class SelfStats {
  readonly sources = new Map<string, SourceStats>();
  /** `${source} ${result}` -> count. */
  readonly collections = new Map<string, number>();
  /** kind -> count. */
  readonly collectionErrors = new Map<string, number>();
  /** result -> count. */
  readonly usersSyncs = new Map<string, number>();
  usersLoaded = 0;
  /** Users of the last document beyond limits.maxUsers. */
  usersRefused = 0;
  exportFailures = 0;

  count(map: Map<string, number>, key: string, by = 1): void {
    map.set(key, (map.get(key) ?? 0) + by);
  }
}

