import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Machine } from './machine.js';

/** One line of a benchmark's table: a figure of this system against the baseline measured in the same run. */
export interface Row {
  figure: string;
  system: number | null;
  baseline: number | null;
  /** Unit printed after both numbers. */
  unit?: string;
  /** What the ratio is compared with, e.g. '>= 0.5x', '<= 1.5x', '< 1000 ms' (absolute targets have no baseline). */
  target?: string;
  /** Computed from system/baseline unless given. */
  ratio?: number | null;
  met?: boolean | null;
  /** Name of the baseline shown in the table. */
  baselineName?: string;
}

export interface BenchResult {
  name: string;
  /** The workload actually run (scaled down by default: see docs/benchmarks.md). */
  scale: Record<string, unknown>;
  rows: Row[];
  notes: string[];
  /** Raw measurements kept in the JSON file (series, per-phase numbers). */
  details: Record<string, unknown>;
}

export interface RunRecord extends BenchResult {
  startedAt: string;
  durationS: number;
  mode: 'default' | 'long';
  machine: Machine;
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const RESULTS_DIR = join(ROOT, 'bench', 'results');

export function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  if (Math.abs(value) >= 100 || digits === 0) return Math.round(value).toLocaleString('en-US');
  return value.toFixed(digits);
}

function smart(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '-';
  const abs = Math.abs(value);
  if (abs === 0) return '0';
  if (abs >= 100) return fmt(value);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

/** Fills in ratio (system / baseline) and met (from a target like '>= 0.5x', '<= 1.5x', '< 1000'). */
export function finishRow(row: Row): Row {
  const ratio = row.ratio !== undefined ? row.ratio : row.system !== null && row.baseline !== null && row.baseline !== 0 ? row.system / row.baseline : null;
  let met = row.met;
  if (met === undefined && row.target) {
    const m = /^(>=|<=|<|>)\s*([\d.]+)\s*(x?)/.exec(row.target);
    if (m) {
      const value = m[3] === 'x' ? ratio : row.system;
      const limit = Number(m[2]);
      met = value === null ? null : m[1] === '>=' ? value >= limit : m[1] === '<=' ? value <= limit : m[1] === '<' ? value < limit : value > limit;
    }
  }
  return { ...row, ratio, met: met ?? null };
}

/** A plain-text table: figure | this system | baseline | ratio | target | met? */
export function renderTable(result: BenchResult): string {
  const head = ['figure', 'this system', 'baseline', 'ratio', 'target', 'met?'];
  const lines = result.rows.map((r) => {
    const unit = r.unit ? ` ${r.unit}` : '';
    return [
      r.figure,
      `${smart(r.system)}${r.system === null ? '' : unit}`,
      r.baseline === null ? '-' : `${smart(r.baseline)}${unit}${r.baselineName ? ` (${r.baselineName})` : ''}`,
      r.ratio === null || r.ratio === undefined ? '-' : `${smart(r.ratio)}x`,
      r.target ?? '-',
      r.met === null || r.met === undefined ? '-' : r.met ? 'yes' : 'NO',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [row(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...lines.map(row)].join('\n');
}

export function renderResult(record: RunRecord): string {
  const scale = Object.entries(record.scale)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');
  const out = [`## ${record.name} (${record.mode}, ${record.durationS.toFixed(0)} s) — ${scale}`, '', renderTable(record)];
  if (record.notes.length) out.push('', ...record.notes.map((n) => `- ${n}`));
  return out.join('\n');
}

/** Appends one run as its own JSON file (commit-friendly: never rewritten). */
export function saveRecord(record: RunRecord): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stamp = record.startedAt.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z');
  const file = join(RESULTS_DIR, `${stamp}-${record.name}.json`);
  writeFileSync(file, `${JSON.stringify(record, null, 2)}\n`);
  return file;
}

export function percentile(values: number[], p: number): number | null {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export function median(values: number[]): number | null {
  return percentile(values, 50);
}
