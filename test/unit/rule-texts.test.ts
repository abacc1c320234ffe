/**
 * RuleTexts against a plain model (a map of id -> string and holder counts):
 * texts added as bytes or as text, ASCII or not, held, released and compared
 * in random order, the buffer compacted (when full, or tidied) on the way. A
 * held text must read back as it was added and compare as strings compare,
 * whatever was dropped.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RuleTexts } from '../../src/sources/iptables/rule-texts.js';
import { random } from './random.js';

const PIECES = ['PREROUTING', ' ', '-s 10.8.0.2/32', '-j MARK --set-xmark 0x10/0xffffffff', '"naïve €"', 'ü', '-p tcp', 'x'.repeat(300), ''];

test('held texts read back and compare as the strings they were made from, through compactions', () => {
  for (let seed = 1; seed <= 40; seed++) {
    const rng = random(seed);
    const texts = new RuleTexts();
    const model = new Map<number, { text: string; holders: number }>();
    const line = () => Array.from({ length: rng.int(5) }, () => rng.pick(PIECES)).join('');
    for (let step = 0; step < 600; step++) {
      const ids = [...model.keys()];
      const roll = rng.int(10);
      if (roll < 4 || ids.length === 0) {
        // Added amid other text, as a dump's line is: as its bytes, or as a slice of a string.
        const text = line();
        const before = rng.pick(['', '[1:2] -A ', 'é']);
        let id: number;
        if (rng.chance(0.5)) {
          const bytes = Buffer.from(`${before}${text}\n`);
          const from = Buffer.byteLength(before);
          id = texts.addBytes(new DataView(bytes.buffer, bytes.byteOffset, bytes.length), from, from + Buffer.byteLength(text));
        } else id = texts.addText(`${before}${text}\n`, before.length, before.length + text.length);
        assert.ok(!model.has(id), `seed ${seed}: id ${id} given while held`);
        model.set(id, { text, holders: 1 });
      } else if (roll < 6) {
        const id = rng.pick(ids);
        texts.hold(id);
        model.get(id)!.holders += 1;
      } else {
        const id = rng.pick(ids);
        texts.release(id);
        if (--model.get(id)!.holders === 0) model.delete(id);
      }
      assert.equal(texts.held, model.size, `seed ${seed} step ${step}: texts held`);
      if (rng.chance(0.1)) {
        // After a tidy, dropped texts are at most three quarters of the buffer's bytes.
        texts.tidy();
        const held = [...model.values()].reduce((sum, { text }) => sum + Buffer.byteLength(text), 0);
        assert.ok(texts.bytes <= Math.max(1024, 4 * held), `seed ${seed} step ${step}: ${texts.bytes} bytes for ${held} held`);
      }
      const [a, b] = [rng.pick([...model.keys()]), rng.pick([...model.keys()])];
      if (a === undefined || b === undefined) continue;
      const [ta, tb] = [model.get(a)!.text, model.get(b)!.text];
      assert.equal(texts.same(a, b), ta === tb, `seed ${seed} step ${step}: same(${JSON.stringify(ta)}, ${JSON.stringify(tb)})`);
      assert.equal(texts.sameText(a, `<${tb}>`, 1, tb.length + 1), ta === tb);
      const bytes = Buffer.from(tb);
      assert.equal(texts.sameBytes(a, new DataView(bytes.buffer, bytes.byteOffset, bytes.length), 0, bytes.length), ta === tb);
    }
    for (const [id, { text }] of model) {
      assert.equal(texts.text(id), text, `seed ${seed}: text ${id}`);
      assert.equal(texts.isAscii(id), /^[\x00-\x7f]*$/.test(text));
      if (texts.isAscii(id)) assert.equal(texts.slice(id, 1, text.length), text.slice(1));
    }
  }
});

test('a text is never taken for bytes that only look like it: Latin-1 é against its UTF-8', () => {
  const texts = new RuleTexts();
  const id = texts.addText('-m comment --comment é', 0, 22);
  const latin1 = Buffer.from('-m comment --comment é', 'latin1');
  assert.equal(texts.sameBytes(id, new DataView(latin1.buffer, latin1.byteOffset, latin1.length), 0, latin1.length), false);
  assert.equal(texts.sameText(id, '-m comment --comment e', 0, 22), false);
  assert.equal(texts.sameText(id, '-m comment --comment é', 0, 22), true);
});
