import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DumpError } from '../../src/errors.js';
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

  test('an unexpected error is logged with its stack and its causes; an expected one without the stack', () => {
    const lines: string[] = [];
    const log = createLogger('info', {}, { out: (line) => lines.push(line), err: (line) => lines.push(line) });
    const root = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    log.error('reading failed unexpectedly', { error: new TypeError('x is not iterable', { cause: root }) });
    log.error('reading failed', { error: new DumpError('timeout', 'iptables-save', 'did not finish', { cause: root }) });
    const [unexpected, expected] = lines.map((line) => JSON.parse(line) as { error: Record<string, unknown> });
    assert.equal(unexpected!.error.type, 'TypeError');
    assert.match(String(unexpected!.error.stack), /^TypeError: x is not iterable\n +at /);
    assert.deepEqual(Object.keys(unexpected!.error.cause as object), ['type', 'code', 'message', 'stack']);
    assert.equal((unexpected!.error.cause as { code: string }).code, 'ECONNRESET');
    assert.equal(expected!.error.stack, undefined);
    assert.equal((expected!.error.cause as { message: string }).message, 'socket hang up');
  });
});
