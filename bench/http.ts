import type { BenchResult } from './lib/report.js';
export async function runHttp(_options: { long: boolean }): Promise<BenchResult> {
  throw new Error('not yet');
}
