/**
 * ParsedRules: a rule text seen at the same place in the last reading is not
 * walked again. Whatever changes between readings, the parser lent it must
 * report every rule exactly as a parser without it does.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { detach, IptablesSaveParser, ParsedRules, viewDestination, viewSource, viewSpec, type RuleView, type SaveVisitor } from '../../src/sources/iptables/scan.js';

/**
 * What a visitor can read of each rule. With a seed, the dump is given as bytes
 * cut at places the seed picks (a cut may split a character), as a runner gives it.
 */
function seen(dump: string, parsed?: ParsedRules, seed?: number): string[] {
  const out: string[] = [];
  const visitor: SaveVisitor = {
    parsed,
    rule: (r: RuleView) => {
      if (parsed) assert.equal(parsed.texts.text(r.textId), `${r.chain}${r.specStart === r.specEnd ? '' : ' '}${viewSpec(r)}`, 'the kept text is the rule line');
      out.push(JSON.stringify([r.chain, r.packets, r.bytes, r.jump, r.goto, r.mark, r.mark === undefined ? null : r.markMask, viewSource(r), viewDestination(r), viewSpec(r), r.line]));
    },
  };
  const parser = new IptablesSaveParser(visitor);
  if (seed === undefined) parser.push(dump);
  else {
    const bytes = Buffer.from(dump);
    for (let at = 0, k = seed; at < bytes.length; k = (k * 1103515245 + 12345) % 2 ** 31) {
      const size = 1 + (k % 97);
      parser.push(bytes.subarray(at, at + size));
      at += size;
    }
  }
  parser.end();
  return out;
}

const table = (rules: string[]) => `*mangle\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:U - [0:0]\n:Ü - [0:0]\n${rules.join('\n')}\nCOMMIT\n`;

test('rule texts changed, moved, added and removed between readings are read as without the memo', () => {
  const readings = [
    [
      '[5:500] -A PREROUTING -d 10.0.0.1/32 -j MARK --set-xmark 0x1/0xffffffff',
      '[6:600] -A POSTROUTING -s 10.0.0.1/32 -j MARK --set-xmark 0x2/0xffffffff',
      '[0:0] -A PREROUTING -j U',
      '[7:700] -A U -s 10.0.0.2/32 -d 192.0.2.7/32 -m comment --comment "u 2" -j MARK --set-mark 0x3',
    ],
    // The same places with other texts: another mark, mask, address, target, -g, negation, no mark.
    [
      '[8:800] -A PREROUTING -d 10.0.0.1/32 -j MARK --set-xmark 0x9/0xffffffff',
      '[9:900] -A POSTROUTING -s 10.0.0.9/32 -j MARK --set-xmark 0x2/0xff',
      '[1:1] -A PREROUTING -g U',
      '[7:700] -A U ! -s 10.0.0.2/32 -d 192.0.2.7/32 -m comment --comment "u 2" -j MARK --set-mark 0x3',
    ],
    // A rule inserted at the top: every place shifts; one more rule than before.
    [
      '[1:2] -A PREROUTING -p tcp -j ACCEPT',
      '[8:800] -A PREROUTING -d 10.0.0.1/32 -j MARK --set-xmark 0x9/0xffffffff',
      '[9:900] -A POSTROUTING -s 10.0.0.9/32 -j MARK --set-xmark 0x2/0xff',
      '[1:1] -A PREROUTING -g U',
      '[7:700] -A U ! -s 10.0.0.2/32 -d 192.0.2.7/32 -m comment --comment "u 2" -j MARK --set-mark 0x3',
    ],
    // Back to fewer rules, the same text in another chain, a mark operation, counters only changed.
    [
      '[3:3] -A POSTROUTING -p tcp -j ACCEPT',
      '[8:800] -A U -d 10.0.0.1/32 -j MARK --set-xmark 0x9/0xffffffff',
      '[10:1000] -A POSTROUTING -s 10.0.0.9/32 -j MARK --or-mark 0x2',
    ],
    [],
    ['[4:4] -A POSTROUTING -p tcp -j ACCEPT'],
  ];
  const parsed = new ParsedRules();
  // Each dump read twice: once changed, once the same as the last reading.
  for (const rules of readings.flatMap((r) => [r, r])) assert.deepEqual(seen(table(rules), parsed), seen(table(rules)));
});

test('a reading that fails part-way leaves the memo telling the truth', () => {
  const parsed = new ParsedRules();
  const good = table(['[1:1] -A PREROUTING -d 10.0.0.1/32 -j MARK --set-xmark 0x1/0xffffffff', '[2:2] -A PREROUTING -d 10.0.0.2/32 -j MARK --set-xmark 0x2/0xffffffff']);
  seen(good, parsed);
  const broken = '*mangle\n:PREROUTING ACCEPT [0:0]\n[1:1] -A PREROUTING -d 10.0.0.5/32 -j MARK --set-xmark 0x5/0xffffffff\n[2:2] -A PREROUTING -d 10.0.0.2/32 -j MARK --set-xmark\n';
  assert.throws(() => seen(broken, parsed), /MARK without/);
  assert.deepEqual(seen(good, parsed), seen(good));
});

test('a kept rule text does not keep the dump it was cut from alive', () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept: string[] = [];
  // 500 chunks of 64 KB, as the save command's pipe delivers them; a 100-character rule text of each kept.
  for (let i = 0; i < 500; i++) kept.push(detach(`${String(i).padStart(8, '0')}${'-A X -j MARK '.repeat(5000)}`.slice(100, 200)));
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 4e6, `kept ${(grown / 1e6).toFixed(1)} MB for 500 texts of 100 characters`);
  assert.equal(kept[7], `${String(7).padStart(8, '0')}${'-A X -j MARK '.repeat(5000)}`.slice(100, 200));
});

test('a dump given as bytes is read as the same dump given as text, reading after reading', () => {
  const rules = [
    '[5:500] -A PREROUTING -d 10.0.0.1/32 -j MARK --set-xmark 0x1/0xffffffff',
    '[6:600] -A POSTROUTING -s 10.0.0.1/32 -m comment --comment "café €" -j MARK --set-xmark 0x2/0xffffffff',
    '[0:0] -A PREROUTING -j U',
    '[7:700] -A U -s 10.0.0.2/32 -d 192.0.2.7/32 -m comment --comment "u 2" -j MARK --set-mark 0x3',
    '[8:800] -A U -s 10.0.0.3/32 -j MARK --set-mark 0x4',
    '[123456789012345678:9] -A U -s 10.0.0.4/32 -j MARK --set-mark 0x5',
    // Characters of two and three bytes before the address: its place in the kept bytes is not its place in the text.
    '[9:900] -A U -m comment --comment "ü €" -d 10.0.0.5/32 -j MARK --set-mark 0x6',
    // A chain whose name is not ASCII, with a rule text and without one.
    '[10:1000] -A Ü -d 10.0.0.6/32 -j MARK --set-mark 0x7',
    '[11:1100] -A Ü',
  ];
  const readings = [
    rules,
    rules.map((r) => r.replace(/^\[(\d+):/, (_m, p: string) => `[${BigInt(p) + 1n}:`)),
    [rules[0]!, rules[2]!, ...rules.slice(3).map((r) => r.replace(' -A U ', ' -A POSTROUTING ')), rules[1]!],
    [rules[0]!, rules[1]!.replace('€', '$'), '   ' + rules[2]!, rules[3]!.replace('0x3', '0x9'), `${rules[4]!}  \r`],
    rules.slice(0, 2),
    rules,
  ];
  const parsed = new ParsedRules();
  let seed = 1;
  for (const r of readings.flatMap((r) => [r, r])) assert.deepEqual(seen(table(r), parsed, seed++), seen(table(r)));
});

test('bytes that are not the kept text in UTF-8 are never taken for it', () => {
  const parsed = new ParsedRules();
  const rule = (comment: string) => `*mangle\n:PREROUTING ACCEPT [0:0]\n[1:1] -A PREROUTING -m comment --comment ${comment} -j MARK --set-xmark 0x1/0xffffffff\nCOMMIT\n`;
  seen(rule('é'), parsed, 1);
  // Latin-1's é (one byte, not UTF-8): the same length and codes as the kept text's characters.
  const latin1 = Buffer.from(rule('é'), 'latin1');
  const specs: string[] = [];
  const parser = new IptablesSaveParser({ parsed, rule: (r) => specs.push(viewSpec(r)) });
  parser.push(latin1).end();
  assert.deepEqual(specs, [`-m comment --comment \ufffd -j MARK --set-xmark 0x1/0xffffffff`]);
});

test('a dump given as bytes is decoded in pieces young objects hold (a longer line whole)', () => {
  const long = `[0:0] -A PREROUTING -m comment --comment ${'x'.repeat(100_000)} -j ACCEPT`;
  const rules = Array.from({ length: 5000 }, (_, i) => `[${i}:${i}] -A PREROUTING -d 10.9.${i >> 8}.${i & 255}/32 -j MARK --set-xmark 0x${i.toString(16)}/0xffffffff`);
  rules.splice(2500, 0, long);
  const texts = new Set<string>();
  const parser = new IptablesSaveParser({ rule: (r) => texts.add(r.text) });
  parser.push(Buffer.from(table(rules))).end();
  const lengths = [...texts].map((t) => t.length);
  assert.ok(texts.size > 5, `${texts.size} pieces`);
  assert.ok(lengths.every((n) => n <= 65536 || n === long.length + 1), `pieces of ${lengths.join(', ')} characters`);
});

test('a rule without text, then the same bytes shifted by a space, is refused as the text reading refuses it', () => {
  const parsed = new ParsedRules();
  const dump = (rule: string) => table(['[1:1] -A PREROUTING -d 10.0.0.1/32 -j MARK --set-xmark 0x1/0xffffffff', rule]);
  assert.deepEqual(seen(dump('[2:2] -A U'), parsed, 1), seen(dump('[2:2] -A U')));
  assert.throws(() => seen(dump('[2:2] -A  U')), /does not declare/);
  assert.throws(() => seen(dump('[2:2] -A  U'), parsed, 2), /does not declare/);
});
