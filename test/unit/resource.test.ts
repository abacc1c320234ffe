/**
 * The resource's service.instance.id: the same for every process of one sidecar (its host name
 * and network namespace), another for another namespace, and OTEL_RESOURCE_ATTRIBUTES wins.
 * (Real processes one after the other: test/integration/instance-id.test.ts.)
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildResource, networkNamespace, stableInstanceId, uuidV5 } from '../../src/export/resource.js';

/** The resource's attributes once the env detector has run (its attributes may come asynchronously). */
async function attributes(resource: ReturnType<typeof buildResource>): Promise<Record<string, unknown>> {
  await resource.waitForAsyncAttributes?.();
  return resource.attributes;
}

/** Runs `fn` with OTEL_RESOURCE_ATTRIBUTES set to `value` (or unset), restoring it after. */
async function withResourceEnv<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.OTEL_RESOURCE_ATTRIBUTES;
  if (value === undefined) delete process.env.OTEL_RESOURCE_ATTRIBUTES;
  else process.env.OTEL_RESOURCE_ATTRIBUTES = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.OTEL_RESOURCE_ATTRIBUTES;
    else process.env.OTEL_RESOURCE_ATTRIBUTES = saved;
  }
}

describe('service.instance.id', () => {
  test('uuidV5 is RFC 4122 name-based (SHA-1): the known DNS-namespace vector', () => {
    assert.equal(uuidV5('www.example.com', '6ba7b810-9dad-11d1-80b4-00c04fd430c8'), '2ed6657d-e927-568b-95e1-2665a8aea6a2');
  });

  test('the same host name and network namespace give the same id; another namespace or host another', () => {
    const sidecar = { hostName: 'wg-client', networkNamespace: 'net:[4026532301]' };
    const id = stableInstanceId(sidecar);
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(stableInstanceId({ ...sidecar }), id);
    assert.notEqual(stableInstanceId({ ...sidecar, networkNamespace: 'net:[4026532302]' }), id);
    assert.notEqual(stableInstanceId({ ...sidecar, hostName: 'wg-client-2' }), id);
  });

  test('this process reads its network namespace', () => {
    assert.match(networkNamespace(), /^net:\[\d+\]$/);
  });

  test('the default resource carries the stable id; two builds in one namespace agree', async () => {
    await withResourceEnv(undefined, async () => {
      const identity = { hostName: 'wg-client', networkNamespace: 'net:[1]' };
      const first = await attributes(buildResource('1.0.0', identity));
      const second = await attributes(buildResource('1.0.0', identity));
      assert.equal(first['service.instance.id'], stableInstanceId(identity));
      assert.equal(second['service.instance.id'], first['service.instance.id']);
      assert.equal(first['service.name'], 'markmeter');
      assert.equal(first['host.name'], 'wg-client');
    });
  });

  test('OTEL_RESOURCE_ATTRIBUTES=service.instance.id=... wins over the default', async () => {
    await withResourceEnv('service.instance.id=gw-paris-1,gateway=paris', async () => {
      const attrs = await attributes(buildResource('1.0.0', { hostName: 'wg-client', networkNamespace: 'net:[1]' }));
      assert.equal(attrs['service.instance.id'], 'gw-paris-1');
      assert.equal(attrs.gateway, 'paris');
    });
  });
});
