import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createLogger } from '../../src/log.js';

describe('logger', () => {
  test('never throws: not for a sink that fails, not for fields that cannot be serialised', () => {
    const lines: string[] = [];
    const cyclic: Record<string, unknown> = { name: 'x' };
    cyclic.self = cyclic;
    createLogger('info', {}, { out: (line) => lines.push(line), err: (line) => lines.push(line) }).info('hello', { cyclic });
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /"msg":"hello","log_error":"fields not serialisable: Converting circular structure/);

    const broken = createLogger('info', {}, { out: () => { throw new Error('EPIPE'); }, err: () => { throw new Error('EPIPE'); } });
    assert.doesNotThrow(() => broken.info('lost'));
    assert.doesNotThrow(() => broken.error('lost too'));
  });
});
