/**
 * What a sync of a large users document costs the agent: the reading path's
 * own users manager re-reads a 50,000-user document (100,000 marks, about
 * 9 MB) in which one user changed (or, second figure, one pool entry: its
 * block of marks is read again; or, third, one user inserted near the top:
 * every later user and every owner of a mark is at another index), validates it, maps it and lines the
 * totals up with it, over an accumulator that holds the previous mapping's
 * users with totals. Measured: the process's CPU from the reload to the new
 * mapping in force, and the longest the event loop was held meanwhile (a
 * reading due then waits that long).
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger } from '../../src/log.js';
import { ReadingPath } from '../../src/reading-path.js';
import { loadSettings } from '../../src/settings.js';
import { generateGateway } from './generate.js';

type Row = (figure: string, value: string, target?: string, ok?: boolean) => void;

const USERS = 50_000;
const ROUNDS = 7;
/** Targets: the CPU of one sync, and the longest pause, well under a 1 s collect.intervalMs (about a quarter of a reading). */
const CPU_MS = 150;
const PAUSE_MS = 50;

const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function usersSyncCost(row: Row): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'markmeter-users-sync-'));
  try {
    const file = join(dir, 'users.json');
    const original = generateGateway(USERS).usersDocument;
    // Versions that differ from the original in one user, or in one pool entry's peer, each written in turn with it: each sync is a real change.
    const renamed = original.replace('"user_code":"u25000"', '"user_code":"u25000-renamed"');
    const repeered = original.replace('{"mark_id":50002,"sips":["192.0.2.7"]', '{"mark_id":50002,"sips":["192.0.2.8"]');
    // And one in which a user is inserted near the top (before the 100th): every later entry is at another index.
    const inserted = original.replace('{"user_code":"u98",', '{"user_code":"u98-new","user_intra_ip":"10.255.255.254"},\n{"user_code":"u98",');
    if (renamed === original || repeered === original || inserted === original) throw new Error('the generated document lacks the entry the bench changes');
    const write = (text: string) => {
      writeFileSync(`${file}.tmp`, text);
      renameSync(`${file}.tmp`, file);
    };
    write(original);
    const settings = loadSettings({ env: { MARKMETER_USERS_FILE: file, MARKMETER_IPV6: 'false', MARKMETER_MAX_USERS: String(2 * USERS) } });
    const path = new ReadingPath({ settings, log: createLogger('silent'), remember: true });
    let applied: (() => void) | undefined;
    const manager = path.watchUsers(() => applied?.());
    if (!manager) throw new Error('no users manager: users.file is not set');
    manager.on('error', (error) => {
      throw error;
    });
    const sync = () => new Promise<void>((done) => ((applied = done), void manager.reload()));
    await sync();
    // Every user has totals, as after a while of readings.
    const add = path.accumulator.sinkFor(path.markMap);
    for (let owner = 0; owner < path.markMap.users.length; owner++) add(owner, 'rx', 1000, 64_000);

    const pauses: number[] = [];
    const syncCost = async (changed: string) => {
      const cpu: number[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        write(round % 2 === 0 ? changed : original);
        await sleep(20);
        const loop = monitorEventLoopDelay({ resolution: 1 });
        loop.enable();
        const before = cpuMs();
        await sync();
        cpu.push(cpuMs() - before);
        // The monitor records a pause at its next tick, after the pause.
        await sleep(5);
        loop.disable();
        // The delay past the 1 ms timer the monitor waits for.
        pauses.push(Math.max(0, loop.max / 1e6 - 1));
      }
      // Back to the original, for the next series.
      if (ROUNDS % 2 === 1) {
        write(original);
        await sync();
      }
      return cpu;
    };
    const cpuRow = (figure: string, cpu: number[]) =>
      row(`${figure}: CPU (median of ${ROUNDS})`, `${median(cpu).toFixed(0)} ms (${cpu.map((c) => c.toFixed(0)).join(' / ')})`, `<= ${CPU_MS} ms`, median(cpu) <= CPU_MS);
    cpuRow(`users sync, ${USERS.toLocaleString('en')} users`, await syncCost(renamed));
    cpuRow('users sync, one pool entry changed instead', await syncCost(repeered));
    cpuRow('users sync, one user inserted near the top instead', await syncCost(inserted));
    const pause = Math.max(...pauses);
    row('users sync: longest pause of the event loop (worst round)', `${pause.toFixed(0)} ms`, `<= ${PAUSE_MS} ms`, pause <= PAUSE_MS);
    // For scale: what JSON.parse of the same text alone holds the event loop for.
    const started = performance.now();
    JSON.parse(original);
    row('users sync: for scale, JSON.parse of the document alone', `${(performance.now() - started).toFixed(0)} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
