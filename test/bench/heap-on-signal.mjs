// Preloaded into the benchmarked agent: on SIGUSR2, writes its V8 heap in use (bytes) to $MARKMETER_HEAP_FILE.
import { writeFileSync } from 'node:fs';

process.on('SIGUSR2', () => writeFileSync(process.env.MARKMETER_HEAP_FILE, String(process.memoryUsage().heapUsed)));
