/**
 * What Grafana (11.x, also with Scenes) makes of a Prometheus series-query variable, so the
 * dashboard's user variable can be checked without a Grafana: the series API's label sets become
 * texts like `name{label="value",...}` (labels in the order Prometheus returns them, sorted; values
 * not escaped), the variable's regex picks the named groups `value` and `text` (text falls back to
 * value), and options are unique by value, the first one kept.
 */

export interface VariableOption {
  text: string;
  value: string;
}

/** The text Grafana builds for one series of /api/v1/series (getOriginalMetricName). */
export function seriesText(labels: Record<string, string>): string {
  const { __name__: name = '', ...rest } = labels;
  const sorted = Object.keys(rest).sort();
  return `${name}{${sorted.map((key) => `${key}="${rest[key]}"`).join(',')}}`;
}

/** A variable regex written as `/pattern/flags`, as Grafana reads it. */
function variableRegex(regex: string): RegExp {
  const match = /^\/(.*)\/([gimsuy]*)$/s.exec(regex);
  if (!match) throw new Error(`not a /pattern/flags regex: ${regex}`);
  return new RegExp(match[1]!, match[2]);
}

/** The options a query variable with this regex shows for these texts. */
export function variableOptions(regex: string, texts: string[]): VariableOption[] {
  const pattern = variableRegex(regex);
  const options: VariableOption[] = [];
  for (const item of texts) {
    const match = pattern.exec(item);
    if (!match) continue;
    // Grafana takes a group only when it captured a non-empty string.
    const value = match.groups?.value || match.groups?.text;
    const text = match.groups?.text || value;
    if (!value || !text) throw new Error(`no value or text group captured in ${item}: not modelled here`);
    if (!options.some((o) => o.value === value)) options.push({ value, text });
  }
  return options;
}
