/**
 * The agent's own settings (convict): one schema, every key with a doc string,
 * default, env var and format. Sources, later ones winning: defaults, the
 * `--config` file (JSON or YAML), environment variables, overrides from the CLI.
 * Not to be confused with the tunnel client's users document (users/).
 */
import convict from 'convict';
import { existsSync, readFileSync } from 'node:fs';
import YAML from 'yaml';
import { SettingsError } from './errors.js';
import { closestName } from './shared/closest-name.js';
import { redactUrl } from './shared/redact.js';
import { LOG_LEVELS, type LogLevel } from './log.js';
import type { Breakdown } from './attribution/mark-map.js';
import type { BackendSetting } from './sources/iptables/backend.js';

convict.addParser([
  { extension: 'json', parse: JSON.parse },
  { extension: ['yml', 'yaml'], parse: (text: string) => YAML.parse(text) as unknown },
]);

export const EXPORT_PROTOCOLS = ['http/protobuf', 'http/json'] as const;
export type ExportProtocol = (typeof EXPORT_PROTOCOLS)[number];

export interface Settings {
  users: { file: string; url: string; pollMs: number; timeoutMs: number; maxBytes: number; token: string; tokenFile: string; caFile: string; removedGraceMs: number };
  collect: { intervalMs: number; timeoutMs: number; maxOutputBytes: number; sources: SourceKind[] };
  export: { intervalMs: number; timeoutMs: number; protocol: ExportProtocol; maxRequestBytes: number; prometheus: { port: number; host: string } };
  iptables: { ipv6: boolean; backend: BackendSetting; saveCommand: string; save6Command: string; table: string };
  tc: { devices: { name: string; direction: 'rx' | 'tx' }[]; command: string };
  attribution: { rxChains: string[]; txChains: string[]; breakdown: Breakdown };
  interfaces: { names: string[] };
  namespace: { exitWhenOrphaned: boolean };
  limits: { maxUsers: number };
  health: { listen: string };
  log: { level: LogLevel };
}

export const SOURCE_KINDS = ['iptables', 'tc'] as const;
export type SourceKind = (typeof SOURCE_KINDS)[number];

// Named formats so values from env vars (always strings) are coerced before they are checked.
const splitList = (value: unknown) => (typeof value === 'string' ? value.split(',').map((v) => v.trim()).filter(Boolean) : value);
convict.addFormats({
  'source-list': {
    coerce: splitList,
    validate: (value: unknown) => {
      if (!Array.isArray(value) || value.length === 0 || value.some((v) => !SOURCE_KINDS.includes(v as SourceKind)) || new Set(value).size !== value.length) {
        throw new Error(`must be a non-empty list of ${SOURCE_KINDS.join(' and/or ')} (e.g. "iptables,tc"), got ${JSON.stringify(value)}`);
      }
    },
  },
  'tc-devices': {
    // From the environment: "wg0:tx,eth1:rx".
    coerce: (value: unknown) =>
      typeof value === 'string'
        ? value.split(',').map((v) => v.trim()).filter(Boolean).map((v) => {
            const [name, direction] = v.split(':');
            return { name, direction };
          })
        : value,
    validate: (value: unknown) => {
      const ok = (d: unknown) => {
        const { name, direction } = (d ?? {}) as Record<string, unknown>;
        return typeof name === 'string' && /^[\w.:@-]{1,15}$/.test(name) && (direction === 'rx' || direction === 'tx');
      };
      if (!Array.isArray(value) || !value.every(ok) || new Set(value.map((d: { name: string }) => d.name)).size !== value.length) {
        throw new Error(`must be a list of {"name": "<device>", "direction": "rx" | "tx"} with distinct names (env: "wg0:tx,eth1:rx"), got ${JSON.stringify(value)}`);
      }
    },
  },
  'positive-int': {
    coerce: (value: unknown) => (typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value),
    validate: (value: unknown) => {
      if (!Number.isInteger(value) || (value as number) <= 0) throw new Error('must be a positive integer');
    },
  },
  'chain-list': {
    coerce: splitList,
    validate: (value: unknown) => {
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || !/^[\w.-]+$/.test(v))) {
        throw new Error(`must be a list of chain names, got ${JSON.stringify(value)}`);
      }
    },
  },
  'interface-list': {
    coerce: splitList,
    validate: (value: unknown) => {
      if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || !/^[\w.:@-]{1,15}$/.test(v) || v.startsWith('.'))) {
        throw new Error(`must be a list of interface names, got ${JSON.stringify(value)}`);
      }
    },
  },
});

/** export.maxRequestBytes: its default, and the least it may be. */
export const EXPORT_DEFAULT_REQUEST_BYTES = 4 * 1024 * 1024;
export const EXPORT_MIN_REQUEST_BYTES = 64 * 1024;

/** The most users.maxBytes may be. */
const USERS_MAX_BYTES_LIMIT = 256 * 1024 * 1024;

const schema = {
  users: {
    file: {
      doc: 'Users document (JSON) to load and watch; see the README for its form.',
      format: String,
      default: '',
      env: 'MARKMETER_USERS_FILE',
    },
    url: {
      doc: 'Users document to poll over HTTP(S) instead of a file (If-None-Match/ETag, backoff on failure).',
      format: String,
      default: '',
      env: 'MARKMETER_USERS_URL',
    },
    pollMs: {
      doc: 'How often users.url is polled, in milliseconds (doubling after each failure, up to 16 times).',
      format: 'positive-int',
      default: 30000,
      env: 'MARKMETER_USERS_POLL_MS',
    },
    timeoutMs: {
      doc: 'How long one fetch of users.url may take in all (connecting, the headers and the whole body), in milliseconds.',
      format: 'positive-int',
      default: 10000,
      env: 'MARKMETER_USERS_TIMEOUT_MS',
    },
    maxBytes: {
      doc: 'The largest users document taken, in bytes (users.url body or users.file; at most 256 MiB); a larger one is refused (a fetch aborted) and the last good mapping stays.',
      format: 'positive-int',
      default: 32 * 1024 * 1024,
      env: 'MARKMETER_USERS_MAX_BYTES',
    },
    token: {
      doc: 'Bearer token sent to users.url (prefer users.tokenFile: it stays out of env listings).',
      format: String,
      default: '',
      env: 'MARKMETER_USERS_TOKEN',
      sensitive: true,
    },
    tokenFile: {
      doc: 'File holding the bearer token for users.url, read on every poll (so a rotated token is used).',
      format: String,
      default: '',
      env: 'MARKMETER_USERS_TOKEN_FILE',
    },
    caFile: {
      doc: 'PEM file of the CA that signed the users.url server certificate (default: the system CAs).',
      format: String,
      default: '',
      env: 'MARKMETER_USERS_CA_FILE',
    },
    removedGraceMs: {
      doc: "How long a removed user's series keep being exported before they stop.",
      format: 'nat',
      default: 300000,
      env: 'MARKMETER_USERS_REMOVED_GRACE_MS',
    },
  },
  collect: {
    intervalMs: {
      doc: 'How often the mangle counters are read, in milliseconds.',
      format: 'positive-int',
      default: 5000,
      env: 'MARKMETER_COLLECT_INTERVAL_MS',
    },
    timeoutMs: {
      doc: 'How long one iptables-save run may take before it is killed, in milliseconds.',
      format: 'positive-int',
      default: 10000,
      env: 'MARKMETER_COLLECT_TIMEOUT_MS',
    },
    maxOutputBytes: {
      doc: 'Largest iptables-save output accepted, in bytes; a larger one is an error, not a partial read.',
      format: 'positive-int',
      default: 256 * 1024 * 1024,
      env: 'MARKMETER_COLLECT_MAX_OUTPUT_BYTES',
    },
    sources: {
      doc: 'Where per-user counters come from: iptables (the MARK rules) and/or tc (the shaping classes of tc.devices, with their drops).',
      format: 'source-list',
      default: ['iptables'],
      env: 'MARKMETER_SOURCES',
    },
  },
  export: {
    intervalMs: {
      doc: 'How often metrics are pushed over OTLP, in milliseconds.',
      format: 'positive-int',
      default: 15000,
      env: 'OTEL_METRIC_EXPORT_INTERVAL',
    },
    timeoutMs: {
      doc: 'How long one OTLP push may take, in milliseconds (clamped to export.intervalMs).',
      format: 'positive-int',
      default: 10000,
      env: 'OTEL_METRIC_EXPORT_TIMEOUT',
    },
    protocol: {
      doc: 'OTLP encoding over HTTP: http/protobuf (smaller and cheaper for many users) or http/json. Also read from OTEL_EXPORTER_OTLP_PROTOCOL.',
      format: [...EXPORT_PROTOCOLS],
      default: 'http/protobuf',
      env: 'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL',
    },
    maxRequestBytes: {
      doc: 'The most bytes of one OTLP push request (at least 65536): more users go out as several requests, one after another, each under the collector\'s body limit (20 MiB by default).',
      format: 'positive-int',
      default: EXPORT_DEFAULT_REQUEST_BYTES,
      env: 'MARKMETER_EXPORT_MAX_REQUEST_BYTES',
    },
    prometheus: {
      port: {
        doc: 'Also serve /metrics on this port for Prometheus to scrape (for sites without a collector); 0: off. OTLP push stays on.',
        format: 'port',
        default: 0,
        env: 'MARKMETER_PROMETHEUS_PORT',
      },
      host: {
        doc: 'Address the /metrics listener binds to (0.0.0.0 to be scraped from other hosts).',
        format: String,
        default: '127.0.0.1',
        env: 'MARKMETER_PROMETHEUS_HOST',
      },
    },
  },
  iptables: {
    ipv6: {
      doc: 'Also read the IPv6 mangle table with ip6tables-save.',
      format: Boolean,
      default: true,
      env: 'MARKMETER_IPV6',
    },
    backend: {
      doc: 'Which iptables backend holds the rules: nft, legacy, or auto (the one whose table holds more rules; detected again when it comes back empty).',
      format: ['auto', 'nft', 'legacy'],
      default: 'auto',
      env: 'MARKMETER_IPTABLES_BACKEND',
    },
    saveCommand: {
      doc: 'The IPv4 save command (a program on PATH or a path), run as: <cmd> -c -t <table>; empty: that of iptables.backend.',
      format: String,
      default: '',
      env: 'MARKMETER_IPTABLES_SAVE',
    },
    save6Command: {
      doc: 'The IPv6 save command, run as: <cmd> -c -t <table>; empty: that of iptables.backend.',
      format: String,
      default: '',
      env: 'MARKMETER_IP6TABLES_SAVE',
    },
    table: {
      doc: 'The table holding the per-user MARK rules.',
      format: String,
      default: 'mangle',
      env: 'MARKMETER_IPTABLES_TABLE',
    },
  },
  tc: {
    devices: {
      doc: 'With the tc source: the devices whose egress shapes each direction, as {"name", "direction": "rx" | "tx"} (upload leaves through the tunnel device: tx; download through the users\' side: rx).',
      format: 'tc-devices',
      default: [],
      env: 'MARKMETER_TC_DEVICES',
    },
    command: {
      doc: 'The tc program (a name on PATH or a path), run as: <cmd> -s class show dev <device> and <cmd> filter show dev <device>.',
      format: String,
      default: 'tc',
      env: 'MARKMETER_TC_COMMAND',
    },
  },
  attribution: {
    rxChains: {
      doc: 'Builtin chains whose MARK rules (and the chains they jump to) count as download (rx).',
      format: 'chain-list',
      default: ['PREROUTING'],
      env: 'MARKMETER_RX_CHAINS',
    },
    txChains: {
      doc: 'Builtin chains whose MARK rules (and the chains they jump to) count as upload (tx).',
      format: 'chain-list',
      default: ['POSTROUTING'],
      env: 'MARKMETER_TX_CHAINS',
    },
    breakdown: {
      doc: 'user: one series per user; mark: one per user and mark, with mark_id and peer_ip attributes (which destination carries the packets).',
      format: ['user', 'mark'],
      default: 'user',
      env: 'MARKMETER_BREAKDOWN',
    },
  },
  interfaces: {
    names: {
      doc: 'Interfaces whose totals are exported as net_interface_*_packets (a missing one is skipped).',
      format: 'interface-list',
      default: ['wg0'],
      env: 'MARKMETER_INTERFACES',
    },
  },
  namespace: {
    exitWhenOrphaned: {
      doc: "Exit (status 1) when the network namespace has had no up Ethernet link for 3 readings after having one: what a sidecar is left with when the container whose network it shares stops or restarts, so its restart policy starts it in the new namespace. Turn off where every Ethernet link may go away and come back.",
      format: Boolean,
      default: true,
      env: 'MARKMETER_EXIT_WHEN_ORPHANED',
    },
  },
  limits: {
    maxUsers: {
      doc: 'Most users taken from the users document; the rest are refused (logged and counted) and their traffic is unattributed.',
      format: 'positive-int',
      default: 50000,
      env: 'MARKMETER_MAX_USERS',
    },
  },
  health: {
    listen: {
      doc: 'host:port of the /healthz and /readyz listener; empty disables it.',
      format: String,
      default: '127.0.0.1:9469',
      env: 'MARKMETER_HEALTH_LISTEN',
    },
  },
  log: {
    level: {
      doc: 'Lowest log level written.',
      format: [...LOG_LEVELS],
      default: 'info',
      env: 'MARKMETER_LOG_LEVEL',
    },
  },
};

export interface LoadSettingsOptions {
  /** A JSON or YAML settings file. */
  file?: string;
  /** Values that win over the file and the environment (from CLI flags). */
  overrides?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
}

/** Loads and validates settings; every problem becomes one SettingsError naming the key. */
export function loadSettings(options: LoadSettingsOptions = {}): Settings {
  const env = { ...(options.env ?? process.env) };
  // The signal-specific variable wins over the general one, as the OpenTelemetry spec has it.
  env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL ??= env.OTEL_EXPORTER_OTLP_PROTOCOL;
  const config = convict(schema as never, { env, args: [] }) as convict.Config<Settings>;
  const file = options.file;
  try {
    if (file) {
      if (!existsSync(file)) throw new Error(`settings file ${file} does not exist`);
      config.loadFile(file);
    }
    for (const [key, value] of Object.entries(options.overrides ?? {})) {
      if (value !== undefined) config.set(key as never, value as never);
    }
    config.validate({ allowed: 'strict' });
  } catch (error) {
    const source = file ? `settings (${file})` : 'settings';
    throw new SettingsError(`${source}: ${suggestKeys((error as Error).message)}; see the README's settings table`, {
      cause: error,
    });
  }
  checkOtlpEndpoints(env);
  const settings = config.getProperties();
  if (settings.collect.sources.includes('tc') && settings.tc.devices.length === 0) {
    throw new SettingsError('settings: collect.sources includes tc but tc.devices is empty: name the shaping devices, e.g. MARKMETER_TC_DEVICES=wg0:tx,eth1:rx');
  }
  if (settings.users.url && settings.users.file) {
    throw new SettingsError('settings: users.file and users.url are both set; set one: the users document has one source');
  }
  if (settings.users.url && !(/^https?:\/\//.test(settings.users.url) && URL.canParse(settings.users.url))) {
    throw new SettingsError(`settings: users.url must be an http:// or https:// URL, got ${JSON.stringify(redactUrl(settings.users.url))}`);
  }
  // V8 holds no string past about 512 MiB: a document that size could only crash the decoding.
  if (settings.users.maxBytes > USERS_MAX_BYTES_LIMIT) {
    throw new SettingsError(`settings: users.maxBytes is at most ${USERS_MAX_BYTES_LIMIT} (256 MiB), got ${settings.users.maxBytes}`);
  }
  // Smaller requests would mean a request for every few users: many round trips per push for nothing.
  if (settings.export.maxRequestBytes < EXPORT_MIN_REQUEST_BYTES) {
    throw new SettingsError(`settings: export.maxRequestBytes is at least ${EXPORT_MIN_REQUEST_BYTES} (64 KiB), got ${settings.export.maxRequestBytes}`);
  }
  return settings;
}

/** Adds the closest known key to each of convict's "not declared" lines (a typo in the file). */
function suggestKeys(message: string): string {
  const keys = describeSettings().map((row) => row.key);
  // The groups too (`collect`, `export.prometheus`): a misspelt group is reported on its own when it is empty.
  const known = new Set(keys.flatMap((key) => key.split('.').map((_, i, parts) => parts.slice(0, i + 1).join('.'))));
  return message.replace(/configuration param '([^']+)' not declared in the schema/g, (line, key: string) => {
    const guess = closestName(key, known);
    return guess ? `${line} (did you mean ${guess}?)` : line;
  });
}

/**
 * The OTLP endpoint variables the exporter reads, checked at start: a value
 * without a scheme (`localhost:4318`) would otherwise fail every push, and
 * `check` would fail on it too. Empty counts as unset, as for the exporter.
 */
const OTLP_ENDPOINT_VARIABLES = [
  { variable: 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT', form: 'the full metrics URL such as http://localhost:4318/v1/metrics (used as it is)' },
  { variable: 'OTEL_EXPORTER_OTLP_ENDPOINT', form: "the collector's base such as http://localhost:4318 (/v1/metrics is added)" },
] as const;

function checkOtlpEndpoints(env: NodeJS.ProcessEnv): void {
  for (const { variable, form } of OTLP_ENDPOINT_VARIABLES) {
    const value = env[variable];
    if (value === undefined || value.trim() === '') continue;
    if (!isHttpUrl(value)) {
      throw new SettingsError(`settings: ${variable} must be an http:// or https:// URL, ${form}, got ${JSON.stringify(redactUrl(value.trim()))}`);
    }
  }
}

function isHttpUrl(text: string): boolean {
  try {
    const { protocol, hostname } = new URL(text);
    return (protocol === 'http:' || protocol === 'https:') && hostname !== '';
  } catch {
    return false;
  }
}

/** The schema as documentation rows: key, env, default, doc (for the README and `--help`). */
export function describeSettings(): { key: string; env: string; default: unknown; doc: string }[] {
  const rows: { key: string; env: string; default: unknown; doc: string }[] = [];
  const walk = (node: Record<string, unknown>, prefix: string) => {
    for (const [name, value] of Object.entries(node)) {
      const entry = value as Record<string, unknown>;
      const key = prefix ? `${prefix}.${name}` : name;
      if ('doc' in entry && 'default' in entry) {
        rows.push({ key, env: String(entry.env ?? ''), default: entry.default, doc: String(entry.doc) });
      } else {
        walk(entry, key);
      }
    }
  };
  walk(schema, '');
  return rows;
}

/** The settings that differ from their defaults, and where each came from (an env var or the file). */
export function settingOrigins(settings: Settings, file: string | undefined, env: NodeJS.ProcessEnv = process.env): { key: string; value: unknown; origin: string }[] {
  let fromFile: unknown = {};
  if (file) {
    try {
      fromFile = YAML.parse(readFileSync(file, 'utf8')) ?? {};
    } catch {
      fromFile = {};
    }
  }
  const at = (object: unknown, key: string): unknown =>
    key.split('.').reduce<unknown>((node, part) => (node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined), object);
  const rows: { key: string; value: unknown; origin: string }[] = [];
  for (const row of describeSettings()) {
    const value = at(settings, row.key);
    if (JSON.stringify(value) === JSON.stringify(row.default)) continue;
    const origin = row.env && env[row.env] !== undefined ? `env ${row.env}` : at(fromFile, row.key) !== undefined ? `file ${file}` : 'derived';
    // Credentials are never shown: the token, and a user:password written into users.url.
    rows.push({ key: row.key, value: row.key === 'users.token' ? '(hidden)' : row.key === 'users.url' ? redactUrl(String(value)) : value, origin });
  }
  return rows;
}
