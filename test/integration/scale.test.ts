/**
 * Scale: 20,000 users (40,002 rules) through the real agent process and OTLP
 * to the test receiver, every series exact and once in a push sent as several requests; and `snapshot --input` on the
 * generated dump equal to the dump's counters summed per user, exactly (also
 * above 2^53). No root needed: a fake save command prints the dump.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { generateGateway, userIp } from '../bench/generate.js';
import { endProcess } from '../../src/demo/netns.js';
import { NamespacedReceiver, type Point } from '../lab/otlp-receiver.js';

const USERS = 20_000;
/** About a seventh of the push of 20,000 users. */
const MAX_REQUEST_BYTES = 1 << 20;
const CLI = resolve('dist/cli.js');
const FAKE = resolve('test/bin/fake-iptables-save');

let dir: string;
before(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first (npm test does)`);
  dir = await mkdtemp(join(tmpdir(), 'markmeter-scale-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** A generated gateway written to files: its dump and its users document. */
async function writeGateway(name: string, huge: boolean) {
  const gateway = generateGateway(USERS, { huge });
  const dump = join(dir, `${name}.dump`);
  const users = join(dir, `${name}.users.json`);
  await writeFile(dump, gateway.dump);
  await writeFile(users, gateway.usersDocument);
  return { gateway, dump, users };
}

describe(`${USERS} users`, () => {
  test('every user\'s four series reach the collector with exact values', { timeout: 120_000 }, async () => {
    const { gateway, dump, users } = await writeGateway('exported', false);
    const receiver = await NamespacedReceiver.start();
    const agent = spawn(process.execPath, [CLI, 'run'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        MARKMETER_USERS_FILE: users,
        MARKMETER_IPTABLES_SAVE: FAKE,
        FAKE_SAVE_OUTPUT: dump,
        MARKMETER_IPV6: 'false',
        MARKMETER_INTERFACES: 'none0',
        MARKMETER_HEALTH_LISTEN: '',
        MARKMETER_COLLECT_INTERVAL_MS: '1000',
        OTEL_METRIC_EXPORT_INTERVAL: '1500',
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
        MARKMETER_EXPORT_MAX_REQUEST_BYTES: String(MAX_REQUEST_BYTES),
      },
    });
    let log = '';
    agent.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
    try {
      const wanted = [...gateway.expected].map(([code, totals], i) => ({ code, ip: userIp(i), totals }));
      // A push goes as several requests (export.maxRequestBytes); its first carries the self-metrics.
      const pushes = () => {
        const out: Point[][][] = [];
        for (const request of receiver.requests) {
          if (request.some((p) => p.metric === 'markmeter_users')) out.push([]);
          out.at(-1)?.push(request.filter((p) => p.metric.startsWith('net_user_')));
        }
        // The last may still be arriving.
        return out.slice(0, -1);
      };
      const exact = (push: Point[][]) => {
        const byKey = new Map(push.flat().map((p) => [`${p.metric} ${p.attributes.user_code} ${p.attributes.user_intra_ip}`, p.value]));
        return wanted.every(
          ({ code, ip, totals }) =>
            byKey.get(`net_user_rx_packets ${code} ${ip}`) === Number(totals.rxPackets) &&
            byKey.get(`net_user_tx_packets ${code} ${ip}`) === Number(totals.txPackets) &&
            byKey.get(`net_user_rx_bytes ${code} ${ip}`) === Number(totals.rxBytes) &&
            byKey.get(`net_user_tx_bytes ${code} ${ip}`) === Number(totals.txBytes),
        );
      };
      await receiver.waitFor(() => pushes().some(exact), 60_000, () => `not every user arrived exactly; agent log: ${log.slice(-2000)}`);
      const push = pushes().find(exact)!;
      assert.ok(push.length >= 5, `one push in ${push.length} requests of at most ${MAX_REQUEST_BYTES} bytes`);
      assert.equal(push.flat().length, 4 * USERS, 'each series once, no overflow series, no extra series');
      assert.ok(push.flat().every((p) => p.attributes['otel.metric.overflow'] === undefined));
    } finally {
      await endProcess(agent);
      await receiver.stop();
    }
  });

  test('snapshot --input prints each user\'s summed counters exactly, also above 2^53', { timeout: 120_000 }, async () => {
    const { gateway, dump, users } = await writeGateway('snapshot', true);
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'snapshot', '--input', dump, '--users', users, '--format', 'json'], { maxBuffer: 64 << 20 });
    // Read the digits as bigints: JSON.parse would round counters above 2^53.
    const line = /\{"user_code":"(u\d+)","user_intra_ip":"[^"]+","rx_packets":(\d+),"tx_packets":(\d+),"rx_bytes":(\d+),"tx_bytes":(\d+)\}/g;
    const seen = new Map<string, bigint[]>();
    for (const m of stdout.matchAll(line)) seen.set(m[1]!, [BigInt(m[2]!), BigInt(m[3]!), BigInt(m[4]!), BigInt(m[5]!)]);
    assert.equal(seen.size, USERS);
    let huge = 0;
    for (const [code, totals] of gateway.expected) {
      const want = [totals.rxPackets, totals.txPackets, totals.rxBytes, totals.txBytes].map(BigInt);
      assert.deepEqual(seen.get(code), want, code);
      if (want.some((v) => v > 2n ** 53n)) huge += 1;
    }
    assert.ok(huge >= 4, 'some users have counters above 2^53');
    assert.match(stdout, /"unattributed":\{"rx_packets":0,"tx_packets":0,"rx_bytes":0,"tx_bytes":0\}/);
  });
});
