// Preloaded into a benchmarked process: writes its peak RSS (KiB) to $MARKMETER_MAXRSS_FILE at exit.
import { writeFileSync } from 'node:fs';

process.on('exit', () => {
  if (process.env.MARKMETER_MAXRSS_FILE) writeFileSync(process.env.MARKMETER_MAXRSS_FILE, String(process.resourceUsage().maxRSS));
});
