/**
 * RuleMemory against a plain model over many readings of a large table: rules
 * (each text unique, so identity is never a matter of order) inserted and
 * deleted anywhere, in chains that come and go, counters raised and reset,
 * some readings cut short. Every good reading's increase must be the model's
 * exactly: a counter that went down counts whole, a rule not in the last good
 * reading counts whole, a failed reading counts nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { newReadingMemory } from '../../src/sources/iptables/rule-reading.js';
import { IptablesSaveParser } from '../../src/sources/iptables/scan.js';
import type { ObservedRule } from '../../src/totals/rule-memory.js';
import { random } from './random.js';

interface Rule {
  chain: string;
  spec: string;
  packets: number;
}

test('thousands of rules coming and going: each good reading adds exactly what the counters moved', () => {
  for (let seed = 1; seed <= 6; seed++) {
    const rng = random(seed);
    const memory = newReadingMemory();
    let rules: Rule[] = [];
    let next = 0;
    /** Counters at the last good reading, by rule text. */
    let last = new Map<string, number>();
    const add = (reading: number) => {
      const chain = rng.chance(0.1) ? `NEW${reading}` : rng.pick(['PREROUTING', 'POSTROUTING', 'A', 'B']);
      // Marks from a range wider than the table: most lists hold one rule, some several.
      const spec = `-s 10.${next >> 8 & 255}.${next & 255}.1/32 -m comment --comment r${next++} -j MARK --set-xmark 0x${rng.int(4000).toString(16)}/0xffffffff`;
      rules.splice(rng.int(rules.length + 1), 0, { chain, spec, packets: rng.int(1000) });
    };
    for (let i = 0; i < 3000; i++) add(0);
    for (let reading = 1; reading <= 12; reading++) {
      rules = rules.filter(() => !rng.chance(0.05));
      for (let i = rng.int(300); i > 0; i--) add(reading);
      for (const rule of rules) rule.packets = rng.chance(0.05) ? rng.int(10) : rule.packets + rng.int(50);
      const chains = [...new Set(['PREROUTING', 'POSTROUTING', ...rules.map((r) => r.chain)])];
      let dump = `*mangle\n${chains.map((c) => `:${c} ${c.endsWith('ROUTING') ? 'ACCEPT' : '-'} [0:0]`).join('\n')}\n`;
      dump += rules.map((r) => `[${r.packets}:${r.packets * 100}] -A ${r.chain} ${r.spec}`).join('\n');
      const fails = rng.chance(0.2);
      dump += fails ? '\n' : '\nCOMMIT\n';

      const out: ObservedRule = { packets: 0, bytes: 0, slot: 0, fresh: false, credited: false };
      let added = 0n;
      memory.rules.begin();
      const parser = new IptablesSaveParser({
        parsed: memory.parsed,
        rule: (view) => {
          memory.rules.observe(view, out);
          added += BigInt(out.packets);
        },
      });
      try {
        parser.push(Buffer.from(dump)).end();
      } catch {
        memory.rules.abort();
        assert.ok(fails, `seed ${seed} reading ${reading}: an unexpected failure`);
        continue;
      }
      memory.rules.commit();
      let want = 0n;
      for (const rule of rules) {
        const before = last.get(`${rule.chain} ${rule.spec}`);
        want += BigInt(before === undefined || rule.packets < before ? rule.packets : rule.packets - before);
      }
      assert.equal(added, want, `seed ${seed} reading ${reading}`);
      assert.equal(memory.rules.rules, rules.length);
      last = new Map(rules.map((r) => [`${r.chain} ${r.spec}`, r.packets]));
    }
  }
});

test('a table that shrank gives back the memory of its dropped rule lines', () => {
  const memory = newReadingMemory();
  const read = (rules: number) => {
    const lines = Array.from({ length: rules }, (_, i) => `[1:1] -A PREROUTING -d 10.9.${i >> 8}.${i & 255}/32 -m comment --comment "rule ${i}" -j MARK --set-mark ${i}`);
    const out: ObservedRule = { packets: 0, bytes: 0, slot: 0, fresh: false, credited: false };
    memory.rules.begin();
    new IptablesSaveParser({ parsed: memory.parsed, rule: (view) => memory.rules.observe(view, out) })
      .push(Buffer.from(`*mangle\n:PREROUTING ACCEPT [0:0]\n${lines.join('\n')}\nCOMMIT\n`))
      .end();
    memory.rules.commit();
  };
  read(3000);
  assert.ok(memory.parsed.texts.bytes > 3000 * 60);
  read(10);
  assert.equal(memory.parsed.texts.held, 10);
  assert.ok(memory.parsed.texts.bytes < 4 * 10 * 100, `${memory.parsed.texts.bytes} bytes kept for 10 rules`);
});
