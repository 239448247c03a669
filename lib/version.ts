/** vmpeer's version, from its package.json (two levels above dist/lib). */
import { createRequire } from 'node:module';

export function version(): string {
  return (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
}
