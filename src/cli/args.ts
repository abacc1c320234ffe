/** Command-line options of one command: node's parseArgs, strict, with -h/--help; a mistake is a UsageError showing the help. */
import { parseArgs } from 'node:util';
import { UsageError } from '../errors.js';

export function parseOptions<T extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(args: string[], options: T, help: string) {
  try {
    return parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\n${help}`);
  }
}
