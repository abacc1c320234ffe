/**
 * Whether a collection found any MARK rule. A host without one prints zero
 * rows and exports nothing per user, which looks like a quiet network: run and
 * snapshot say so instead.
 */
import type { SourceReport } from './collect.js';
import type { Source } from './source.js';

/** What the readings of the MARK rules (the 'marked' sources) found together; undefined when one failed or none ran. */
export function markRulesFound(reports: readonly SourceReport[], sources: readonly Source[]): { rules: number; markRules: number } | undefined {
  const marked = new Set(sources.filter((s) => s.measures === 'marked').map((s) => s.name));
  const readings = reports.filter((r) => marked.has(r.source));
  if (readings.length === 0) return undefined;
  let rules = 0;
  let markRules = 0;
  for (const reading of readings) {
    if (!reading.ok) return undefined;
    rules += reading.rules;
    markRules += reading.markRules;
  }
  return { rules, markRules };
}
