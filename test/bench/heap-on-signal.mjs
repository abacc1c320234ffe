// Preloaded into the benchmarked agent (run with --expose-gc): on SIGUSR2, collects the garbage and
// writes the V8 heap in use (bytes) to $MARKMETER_HEAP_FILE.
import { writeFileSync } from 'node:fs';

process.on('SIGUSR2', () => {
  globalThis.gc?.();
  writeFileSync(process.env.MARKMETER_HEAP_FILE, String(process.memoryUsage().heapUsed));
});
