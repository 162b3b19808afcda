import { describeMachine, renderMachine } from './lib/machine.js';
import { finishRow, renderResult, saveRecord, type BenchResult, type RunRecord } from './lib/report.js';
import { runAgent } from './agent.js';
import { runDetect } from './detect.js';
import { runHttp } from './http.js';
import { runIngest } from './ingest.js';
import { runStore } from './store.js';
import { runSustained } from './sustained.js';

/**
 * `npm run bench` runs every benchmark, `npm run bench -- <name> [<name>...]` some; `--long` runs the
 * full sizes (far longer than 3 minutes on the SQLite-backed test store). Each benchmark prints
 * its table and writes bench/results/<time>-<name>.json. Nothing here asserts: tables say whether targets were met.
 */
const BENCHMARKS: Record<string, (options: { long: boolean }) => Promise<BenchResult>> = {
  ingest: runIngest,
  store: runStore,
  sustained: runSustained,
  detect: runDetect,
  http: runHttp,
  agent: runAgent,
  dashboard: (o) => import('./dashboard.js').then((m) => m.runDashboard(o)),
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const long = args.includes('--long') || args.includes('--full');
  const unknownFlags = args.filter((a) => a.startsWith('-') && !['--long', '--full'].includes(a));
  const names = args.filter((a) => !a.startsWith('-'));
  const bad = [...unknownFlags, ...names.filter((n) => !(n in BENCHMARKS))];
  if (bad.length) {
    process.stderr.write(`unknown: ${bad.join(', ')}\nusage: npm run bench -- [${Object.keys(BENCHMARKS).join('|')} ...] [--long]\n`);
    process.exit(2);
  }
  const selected = names.length ? names : Object.keys(BENCHMARKS);
  const machine = await describeMachine();
  process.stdout.write(`${renderMachine(machine)}\n`);
  let failed = 0;
  for (const name of selected) {
    const startedAt = new Date();
    const t0 = performance.now();
    process.stdout.write(`\n… ${name} running (${long ? 'long' : 'default scale'})\n`);
    try {
      const result = await BENCHMARKS[name]!({ long });
      const record: RunRecord = {
        ...result,
        rows: result.rows.map(finishRow),
        startedAt: startedAt.toISOString(),
        durationS: (performance.now() - t0) / 1000,
        mode: long ? 'long' : 'default',
        machine: { ...machine, loadAverage: machine.loadAverage },
      };
      const file = saveRecord(record);
      process.stdout.write(`\n${renderResult(record)}\n(saved ${file.slice(file.indexOf('bench/results'))})\n`);
    } catch (error) {
      failed++;
      process.stdout.write(`\n## ${name}: FAILED TO RUN: ${(error as Error).stack ?? String(error)}\n`);
    }
  }
  // Open handles of failed runs must not keep the process alive.
  process.exit(failed ? 1 : 0);
}

void main();
