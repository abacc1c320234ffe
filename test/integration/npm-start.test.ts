/**
 * `npm start` stopped the way an operator stops it: Ctrl-C (the terminal
 * sends SIGINT to the whole foreground process group: npm, its shell, the
 * agent) and SIGTERM to npm (a process manager). npm forwards both signals to
 * its child, so the agent must get each signal once, stop cleanly, and npm
 * must exit 0 with no agent left behind.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';

/** npm start in its own process group (as a shell starts a job); resolves once the agent logs. */
async function npmStart() {
  const npm = spawn('npm', ['start'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Nothing listens there: the last push fails fast. No health listener to collide with other runs.
    env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', MARKMETER_HEALTH_LISTEN: '', MARKMETER_COLLECT_INTERVAL_MS: '1000' },
  });
  let output = '';
  npm.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  npm.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(npm, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const deadline = Date.now() + 60_000;
  while (!/^\{"time"/m.test(output)) {
    if (npm.exitCode !== null || Date.now() > deadline) throw new Error(`the agent did not start under npm start:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { npm, exited, output: () => output };
}

/** The agents (markmeter run) among the descendants of `pid`, by /proc's parent links. */
function agentsUnder(pid: number): number[] {
  const rows = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' })
    .split('\n')
    .map((line) => /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(line))
    .filter((m) => m !== null)
    .map((m) => ({ pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! }));
  const family = new Set([pid]);
  for (let grown = true; grown; ) {
    grown = false;
    for (const row of rows) if (family.has(row.ppid) && !family.has(row.pid)) grown = Boolean(family.add(row.pid));
  }
  // The node process itself, not a shell whose command line names it, nor a child the agent is
  // starting (between fork and exec it still shows the agent's command line).
  const agents = rows.filter((row) => family.has(row.pid) && /^\S*node \S*dist\/cli\.js run/.test(row.args));
  const pids = new Set(agents.map((row) => row.pid));
  return agents.filter((row) => !pids.has(row.ppid)).map((row) => row.pid);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Runs `stop`, waits for npm to exit and asserts it exited 0 after a clean stop of the agent, which is gone. */
async function assertCleanStop(stop: (npmPid: number) => void) {
  const { npm, exited, output } = await npmStart();
  const agents = agentsUnder(npm.pid!);
  const timer = setTimeout(() => npm.kill('SIGKILL'), 30_000);
  try {
    assert.equal(agents.length, 1, `one agent under npm start: ${agents.join()}`);
    stop(npm.pid!);
    const [code, signal] = await exited;
    assert.match(output(), /"msg":"markmeter stopped"/, output());
    assert.doesNotMatch(output(), /second SIG/, 'the agent got the signal once');
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, output());
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(alive(agents[0]!), false, 'no agent left behind');
  } finally {
    clearTimeout(timer);
    // Only what this test started: the agent, and npm if it is still there.
    for (const pid of agents) if (alive(pid)) process.kill(pid, 'SIGKILL');
    if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
  }
}

test('npm start, Ctrl-C (SIGINT to the foreground process group): the agent stops cleanly and npm exits 0', async () => {
  await assertCleanStop((pid) => process.kill(-pid, 'SIGINT'));
});

test('npm start, SIGTERM to npm: npm hands it to the agent, which stops cleanly, and npm exits 0', async () => {
  await assertCleanStop((pid) => process.kill(pid, 'SIGTERM'));
});
