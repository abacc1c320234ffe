// Preloaded into the benchmarked agent (run with --expose-gc): on SIGUSR2, collects the garbage and
// writes the V8 heap in use (bytes) to $MARKMETER_HEAP_FILE. Written beside it and renamed, so that
// the bench never reads the file half-written (an empty file read as a heap of 0 MB).
import { renameSync, writeFileSync } from 'node:fs';

process.on('SIGUSR2', () => {
  globalThis.gc?.();
  const file = process.env.MARKMETER_HEAP_FILE;
  writeFileSync(`${file}.part`, String(process.memoryUsage().heapUsed));
  renameSync(`${file}.part`, file);
});
