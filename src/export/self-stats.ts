/**
 * Plain counters the agent keeps about itself, read by the export callback:
 * the agent's parts count here without knowing about OpenTelemetry.
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

