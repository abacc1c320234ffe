/**
 * The reading path against a small independent model, over many readings.
 *
 * The model is a kernel: tables of rules with u64 counters, each rule built
 * for a known owner and direction (so attribution is known by construction,
 * not computed the agent's way). Between readings it inserts, deletes and
 * resets rules and adds traffic; some readings fail (cut, empty, a table twice).
 * After every reading the agent's totals must equal the model's exactly.
 *
 * What no meter can know is kept out of the world on purpose, and said here:
 * identical rules are told apart only by order (so one is removed or added
 * only at the end of its group), a rule removed and added again between two
 * good readings looks like the same rule (so it is not), and a reset is seen
 * only when a counter went down (so traffic after a reset stays below the
 * last reading's count until the next good reading).
 *
 * Then mutation tests: real captures cut, flipped and duplicated must end in
 * an error or in exactly the untouched capture's totals.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { TestGateway, exact } from '../gateway.js';
import { random, type Random } from './random.js';

const U64_MAX = (1n << 64n) - 1n;
const USERS = [
  { user_code: 'u2', user_intra_ip: '10.8.0.2' },
  { user_code: 'u3', user_intra_ip: '10.8.0.3' },
  { user_code: 'u4', user_intra_ip: '10.8.0.4' },
  { user_code: 'v2', user_intra_ip: 'fd00:8::2' },
  { user_code: 'v3', user_intra_ip: 'fd00:8::3' },
];
const FAR = { ipv4: ['192.0.2.7', '192.0.2.8'], ipv6: ['fd00:9::7', 'fd00:9::8'] };
/** Pool marks: 0x10 + user index is the user's; 0x30 is in the pool for nobody. Marks 0x50+ are not in the pool. */
const POOL = [...USERS.map((u, i) => ({ mark_id: 0x10 + i, sips: [u.user_intra_ip], dips: [] as string[] })), { mark_id: 0x30, sips: ['192.0.2.99'], dips: [] }];
const COMMENTS = ['-j', '-g', '-s', '--set-xmark', 'user', '"-j MARK --set-xmark 0x11/0xffffffff"', '"a \\"quoted\\" -g X \\\\ \\\'"', '""', '"naïve €"', 'ü'];

type Family = 'ipv4' | 'ipv6';
type Direction = 'rx' | 'tx';
interface Chain {
  name: string;
  /** The direction its rules count as; undefined: no jump reaches it, its rules count nowhere. */
  direction: Direction | undefined;
}
interface Rule {
  chain: string;
  spec: string;
  /** Owner code, or null for unattributed; undefined for a rule that is not a MARK rule. */
  owner: string | null | undefined;
  packets: bigint;
  bytes: bigint;
  /** Counters at the last good reading (undefined: not yet read), and whether it was reset since. */
  last?: [bigint, bigint];
  reset: boolean;
}
interface Table {
  chains: Chain[];
  rules: Rule[];
  /** Rule identities (chain + spec) deleted since the last good reading: not added again before it. */
  gone: Set<string>;
}

const key = (r: Pick<Rule, 'chain' | 'spec'>) => `${r.chain} ${r.spec}`;

function newTable(rng: Random): Table {
  const chains: Chain[] = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'].map((name) => ({
    name,
    direction: name === 'PREROUTING' ? 'rx' : name === 'POSTROUTING' ? 'tx' : undefined,
  }));
  const rules: Rule[] = [];
  // Custom chains: some reached from one direction (through -j or -g, maybe two levels deep), one unreached.
  for (let c = 0; c < 1 + rng.int(4); c++) {
    const direction: Direction = rng.chance(0.5) ? 'rx' : 'tx';
    const name = `MM_${direction.toUpperCase()}${c}`;
    const from = rng.chance(0.3) ? chains.filter((x) => x.direction === direction && x.name.startsWith('MM_')) : [];
    const parent = from.length > 0 ? rng.pick(from).name : direction === 'rx' ? 'PREROUTING' : 'POSTROUTING';
    chains.push({ name, direction });
    rules.push({ chain: parent, spec: `${rng.chance(0.2) ? '-g' : '-j'} ${name}`, owner: undefined, packets: 0n, bytes: 0n, reset: false });
  }
  chains.push({ name: 'MM_ORPHAN', direction: undefined });
  return { chains, rules, gone: new Set() };
}

/** A MARK rule (or now and then another rule) for a random owner in a random chain of the table. */
function newRule(rng: Random, family: Family, table: Table): Rule {
  const chain = rng.pick(table.chains.filter((c) => c.name !== 'INPUT' && c.name !== 'FORWARD' && c.name !== 'OUTPUT'));
  const direction = chain.direction ?? (rng.chance(0.5) ? 'rx' : 'tx');
  const users = USERS.filter((u) => u.user_intra_ip.includes(':') === (family === 'ipv6'));
  const user = rng.pick(users);
  const far = rng.pick(FAR[family]);
  const host = family === 'ipv6' ? '/128' : '/32';
  const [userSide, farSide] = direction === 'tx' ? ['-s', '-d'] : ['-d', '-s'];
  const matches: string[] = [];
  if (rng.chance(0.4)) matches.push(`-p ${rng.pick(['icmp', 'udp', 'tcp'])}`);
  if (rng.chance(0.4)) matches.push(`-m comment --comment ${rng.pick(COMMENTS)}`);
  if (rng.chance(0.1)) matches.push('-i -j');
  let spec: string;
  let owner: string | null | undefined;
  const kind = rng.int(10);
  if (kind < 4) {
    // A pool mark: its user, whatever the rule's addresses say.
    const owned = rng.pick(users);
    spec = `${userSide} ${user.user_intra_ip}${host} ${farSide} ${far}${host} ${matches.join(' ')} -j MARK --set-xmark 0x${(0x10 + USERS.indexOf(owned)).toString(16)}/0xffffffff`;
    owner = owned.user_code;
  } else if (kind < 7) {
    // Not in the pool: the user's own address on its side decides.
    spec = `${userSide} ${user.user_intra_ip}${host} ${farSide} ${far}${host} ${matches.join(' ')} -j MARK --set-mark 0x${(0x50 + rng.int(8)).toString(16)}`;
    owner = user.user_code;
  } else if (kind < 8) {
    spec = `${rng.chance(0.5) ? `! ${userSide} ${user.user_intra_ip}${host} ` : ''}-d ${far}${host} ${matches.join(' ')} -j MARK --set-xmark 0x${rng.pick(['30', '5f'])}/0xff`;
    owner = null;
  } else if (kind < 9) {
    spec = `${userSide} ${user.user_intra_ip}${host} ${matches.join(' ')} -j LOG --log-prefix "-j MARK --set-xmark 0x11/0xffffffff"`;
    owner = undefined;
  } else {
    spec = `${matches.join(' ')} -j RETURN`;
    owner = undefined;
  }
  const huge = rng.chance(0.05);
  const packets = huge ? U64_MAX - BigInt(rng.int(1000)) - 1_000_000n : BigInt(rng.int(50));
  return { chain: chain.name, spec: spec.replace(/ +/g, ' ').trim(), owner, packets, bytes: huge ? U64_MAX - 1_000_000n : packets * 84n, reset: false };
}

/** One random change of the world between readings. */
function change(rng: Random, family: Family, table: Table): void {
  const { rules } = table;
  const sameAs = (r: Rule) => rules.filter((x) => key(x) === key(r));
  switch (rng.int(6)) {
    case 0: {
      // Insert: at a random place, or after the last identical rule.
      const rule = newRule(rng, family, table);
      if (table.gone.has(key(rule))) return;
      const twins = sameAs(rule);
      const at = twins.length > 0 ? rules.indexOf(twins.at(-1)!) + 1 : rng.int(rules.length + 1);
      rules.splice(at, 0, rule);
      return;
    }
    case 1: {
      // Delete a rule (the last of its identical group), never a jump.
      const marks = rules.filter((r) => !r.spec.startsWith('-j MM_') && !r.spec.startsWith('-g MM_'));
      if (marks.length === 0) return;
      const twins = sameAs(rng.pick(marks));
      const victim = twins.at(-1)!;
      rules.splice(rules.indexOf(victim), 1);
      table.gone.add(key(victim));
      return;
    }
    case 2: {
      // iptables -Z on one rule.
      const rule = rules.length > 0 ? rng.pick(rules) : undefined;
      if (rule) [rule.packets, rule.bytes, rule.reset] = [0n, 0n, true];
      return;
    }
    default: {
      // Traffic, kept below the last reading's count after a reset (otherwise the reset is invisible).
      for (const rule of rules) {
        if (!rng.chance(0.6)) continue;
        const packets = BigInt(rng.int(rule.packets > U64_MAX - 2_000_000n ? 3 : 200));
        const next = rule.packets + packets;
        if (rule.reset && rule.last && next >= rule.last[0]) continue;
        rule.packets = next;
        rule.bytes += packets * BigInt(60 + rng.int(1400));
      }
    }
  }
}

function render(table: Table): string {
  const lines = ['# Generated by iptables-save v1.8.9 on Sun Nov 29 00:00:00 2026', '*mangle'];
  for (const c of table.chains) lines.push(`:${c.name} ${c.name.startsWith('MM_') ? '-' : 'ACCEPT'} [0:0]`);
  for (const c of table.chains) for (const r of table.rules) if (r.chain === c.name) lines.push(`[${r.packets}:${r.bytes}] -A ${r.chain} ${r.spec}`);
  lines.push('COMMIT', '# Completed on Sun Nov 29 00:00:00 2026', '');
  return lines.join('\n');
}

/** A reading that must fail, made from the good one. */
function broken(rng: Random, text: string): string {
  switch (rng.int(4)) {
    case 0:
      return text.slice(0, text.indexOf('COMMIT') - 1 - rng.int(40));
    case 1:
      return rng.pick(['', '# Generated by iptables-save\n', '*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n']);
    case 2:
      return text + text;
    default:
      return text.replace('COMMIT', '[1:1] -A PREROUTING -j MARK --set-xmark\nCOMMIT');
  }
}

type Totals = ReturnType<typeof exact>;
const zero = (): Totals => ({ rxPackets: 0n, txPackets: 0n, rxBytes: 0n, txBytes: 0n });

/** The model's reading: each MARK rule's increase since the last good reading goes to its owner. */
function book(table: Table, expected: Map<string | null, Totals>): void {
  const direction = new Map(table.chains.map((c) => [c.name, c.direction]));
  for (const rule of table.rules) {
    const way = direction.get(rule.chain);
    if (rule.owner !== undefined && way !== undefined) {
      const [p0, b0] = rule.last && !rule.reset ? rule.last : [0n, 0n];
      const totals = expected.get(rule.owner)!;
      if (way === 'rx') {
        totals.rxPackets += rule.packets - p0;
        totals.rxBytes += rule.bytes - b0;
      } else {
        totals.txPackets += rule.packets - p0;
        totals.txBytes += rule.bytes - b0;
      }
    }
    rule.last = [rule.packets, rule.bytes];
    rule.reset = false;
  }
  table.gone.clear();
}

describe('differential: the reading path against an independent model', () => {
  const CASES = 60;
  const READINGS = 8;
  for (let seed = 1; seed <= CASES; seed++) {
    test(`seed ${seed}`, async () => {
      const rng = random(seed);
      const gw = new TestGateway({ users: USERS, marks: POOL }, ['ipv4', 'ipv6']);
      // Each chunk boundary falls anywhere, as pipes deliver them: bytes as a runner gives them
      // (a boundary may split a character), or text as a test's runner may.
      gw.chunking = (text) => {
        const whole = seed % 2 === 0 ? text : Buffer.from(text);
        const chunks: (string | Uint8Array)[] = [];
        for (let i = 0; i < whole.length; ) {
          const size = 1 + rng.int(rng.chance(0.5) ? 16 : 4096);
          chunks.push(whole.slice(i, i + size));
          i += size;
        }
        return chunks;
      };
      const tables: Record<Family, Table> = { ipv4: newTable(rng), ipv6: newTable(rng) };
      for (const family of ['ipv4', 'ipv6'] as const) for (let i = 0; i < 6; i++) change(rng, family, tables[family]);
      const expected = new Map<string | null, Totals>([[null, zero()], ...USERS.map((u) => [u.user_code, zero()] as [string, Totals])]);
      const history: string[] = [];
      for (let reading = 0; reading < READINGS; reading++) {
        const texts: Record<string, string> = {};
        const fail: Record<string, boolean> = {};
        for (const family of ['ipv4', 'ipv6'] as const) {
          for (let i = rng.int(4); i > 0; i--) change(rng, family, tables[family]);
          fail[family] = reading > 0 && rng.chance(0.25);
          texts[family] = fail[family] ? broken(rng, render(tables[family])) : render(tables[family]);
        }
        const reports = await gw.read(texts);
        for (const report of reports) {
          const family = report.source as Family;
          history.push(`reading ${reading} ${family}: ${report.ok ? 'ok' : `failed (${report.error.message})`}`);
          assert.equal(report.ok, !fail[family], `${history.join('\n')}\n${texts[family]}`);
          if (report.ok) book(tables[family], expected);
        }
        const got = Object.fromEntries([...USERS.map((u) => [u.user_code, gw.totals(u.user_code)]), ['unattributed', gw.unattributed()]]);
        const want = Object.fromEntries([...USERS.map((u) => [u.user_code, expected.get(u.user_code)!]), ['unattributed', expected.get(null)!]]);
        assert.deepEqual(got, want, `after reading ${reading}:\n${history.join('\n')}\n${texts.ipv4}\n${texts.ipv6}`);
      }
    });
  }
});

describe('mutations of real captures end in an error or the exact totals', () => {
  const fixtures = ['nft-v4-users.iptables-save', 'legacy-v6-users.iptables-save', 'nft-v4-full-save.iptables-save', 'nft-v4-huge-counters.iptables-save', 'legacy-v4-hostile-options.iptables-save'];
  const users = {
    users: [...['10.8.0.2', '10.8.0.3', '10.8.0.4', '10.8.0.5'].map((ip, i) => ({ user_code: `u${i}`, user_intra_ip: ip })), { user_code: 'v', user_intra_ip: 'fd00:8::2' }],
    marks: [{ mark_id: 101, sips: ['10.8.0.2'], dips: [] }],
  };
  /** One reading of `text` by a fresh agent: its totals, or 'error'. */
  const readOnce = async (text: string) => {
    const gw = new TestGateway(users);
    const [report] = await gw.read({ ipv4: text });
    return report!.ok ? JSON.stringify({ ...gw.all(), unattributed: gw.unattributed() }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)) : 'error';
  };
  for (const name of fixtures) {
    test(name, async () => {
      const text = readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
      const whole = await readOnce(text);
      assert.notEqual(whole, 'error');
      const rng = random(name.length);
      const commitEnd = text.lastIndexOf('COMMIT') + 'COMMIT'.length;
      const mangleCommit = text.indexOf('COMMIT', text.indexOf('*mangle')) + 'COMMIT'.length;
      // Cut anywhere: an error, unless nothing of a table was lost.
      for (let i = 0; i < 60; i++) {
        const at = rng.int(text.length);
        const got = await readOnce(text.slice(0, at));
        // Between the mangle table and the end of another table, a cut may also fall between tables.
        if (at >= commitEnd) assert.equal(got, whole, `cut at ${at}`);
        else if (at >= mangleCommit) assert.ok(got === 'error' || got === whole, `cut at ${at}`);
        else assert.equal(got, 'error', `cut at ${at}`);
      }
      // A structural character flipped: an error or, where it changed nothing that counts, the same totals.
      // (The colons of counters and chain lines: an address's colons are data, and a changed address is another rule.)
      const structural = [...text.matchAll(/[[\]*"]|(?<=\[\d+):|(?<=\n):|(?<= )-|(?<=\n)C/g)].map((m) => m.index);
      for (let i = 0; i < 80; i++) {
        const at = rng.pick(structural);
        const flipped = text.slice(0, at) + rng.pick(['x', ' ', '\n', '"', '[', '-']) + text.slice(at + 1);
        if (flipped === text) continue;
        const got = await readOnce(flipped);
        assert.ok(got === 'error' || got === whole, `flip at ${at}: ${JSON.stringify(text.slice(at - 30, at + 30))} -> ${got}`);
      }
      // A table twice, and nothing at all: errors.
      const mangle = text.slice(text.indexOf('*mangle'), mangleCommit);
      assert.equal(await readOnce(`${text}\n${mangle}\n`), 'error');
      assert.equal(await readOnce(''), 'error');
      assert.equal(await readOnce(text.replace(/^\*mangle$[^]*?^COMMIT$/m, '')), 'error');
    });
  }
});
