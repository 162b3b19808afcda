import type { BenchResult } from './lib/report.js';
export async function runSustained(_options: { long: boolean }): Promise<BenchResult> {
  throw new Error('not yet');
}
