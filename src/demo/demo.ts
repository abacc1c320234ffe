/**
 * `npm run demo` (root, Linux; `node dist/demo/demo.js`): markmeter working on
 * a machine with no tunnel client. It builds the namespace lab of netns.ts
 * (users, gateway, far side: the one the integration tests use), loads
 * per-user MARK rules and a users document for four demo users, drives
 * traffic at different rates (dave bursts: an anomaly to spot), and runs
 * `markmeter top` inside the gateway. With OTEL_EXPORTER_OTLP_ENDPOINT set, the
 * agent also runs (here, reading the gateway's tables through `ip netns exec`)
 * and pushes there. q or Ctrl-C ends top; everything the demo made is removed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { endProcess, Lab, labSupport } from './netns.js';

const CLI = fileURLToPath(new URL('../cli.js', import.meta.url));

const USERS = [
  { user_code: 'alice', user_intra_ip: '10.8.0.2', mark: 101, far: '192.0.2.7', ping: ['-i', '0.05'] },
  { user_code: 'bob', user_intra_ip: '10.8.0.3', mark: 102, far: '192.0.2.8', ping: ['-i', '0.2'] },
  { user_code: 'carol', user_intra_ip: 'fd00:8::2', mark: 201, far: 'fd00:9::7', ping: ['-i', '0.1'] },
  { user_code: 'dave', user_intra_ip: '10.8.0.4', mark: 103, far: '192.0.2.7', ping: ['-i', '0.5'] },
];

async function main(): Promise<number> {
  const support = await labSupport();
  if (!support.ok) {
    process.stderr.write(`npm run demo needs root and iproute2, iptables, iputils-ping: ${support.reason}\n`);
    return 1;
  }
  const dir = await mkdtemp(join(tmpdir(), 'markmeter-demo-'));
  const lab = await Lab.create();
  let agent: ChildProcess | undefined;
  const cleanup = async () => {
    if (agent) await endProcess(agent);
    await lab.destroy();
    await rm(dir, { recursive: true, force: true });
  };
  // Ctrl-C reaches top and the demo alike: the demo waits for top, then cleans up.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => void cleanup().then(() => process.exit(0)));
  try {
    const gw = lab.ns.gw;
    for (const user of USERS) {
      const tool = user.user_intra_ip.includes(':') ? 'ip6tables' : 'iptables';
      await lab.exec(gw, tool, ['-t', 'mangle', '-A', 'POSTROUTING', '-s', user.user_intra_ip, '-d', user.far, '-j', 'MARK', '--set-mark', String(user.mark)]);
      await lab.exec(gw, tool, ['-t', 'mangle', '-A', 'PREROUTING', '-s', user.far, '-d', user.user_intra_ip, '-j', 'MARK', '--set-mark', String(user.mark)]);
    }
    const users = join(dir, 'users.json');
    await writeFile(
      users,
      JSON.stringify({
        users: USERS.map(({ user_code, user_intra_ip }) => ({ user_code, user_intra_ip })),
        marks: USERS.map((u) => ({ mark_id: u.mark, sips: [u.user_intra_ip], dips: [u.far] })),
      }),
    );
    for (const user of USERS) {
      const v6 = user.user_intra_ip.includes(':') ? ['-6'] : [];
      const ping = ['ping', ...v6, '-q', ...user.ping, '-I', user.user_intra_ip, user.far].join(' ');
      // dave: quiet, then a burst of 100 packets/s for 5 s, every 20 s.
      const script = user.user_code === 'dave' ? `while :; do ${ping} -c 30; ping ${v6.join(' ')} -q -i 0.01 -c 500 -I ${user.user_intra_ip} ${user.far}; done` : `exec ${ping}`;
      lab.spawn(lab.ns.users, 'sh', ['-c', script], { stdio: 'ignore' });
    }
    if (process.env.OTEL_EXPORTER_OTLP_ENDPOINT) {
      // The agent runs here, where the collector is reachable, and reads the gateway's tables.
      const save = async (name: string, command: string) => {
        const path = join(dir, name);
        await writeFile(path, `#!/bin/sh\nexec ip netns exec ${gw} ${command} "$@"\n`);
        await chmod(path, 0o755);
        return path;
      };
      agent = spawn(process.execPath, [CLI, 'run'], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env: {
          ...process.env,
          MARKMETER_USERS_FILE: users,
          MARKMETER_IPTABLES_SAVE: await save('iptables-save', 'iptables-nft-save'),
          MARKMETER_IP6TABLES_SAVE: await save('ip6tables-save', 'ip6tables-nft-save'),
          MARKMETER_HEALTH_LISTEN: '',
          MARKMETER_LOG_LEVEL: 'warn',
        },
      });
    }
    const top = lab.spawn(gw, process.execPath, [CLI, 'top', '--users', users, '--interval', '1'], { stdio: 'inherit' });
    const code = await new Promise<number>((done) => top.once('exit', (c) => done(c ?? 0)));
    return code;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`demo failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
