import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Context } from 'mocha';
import { parse, stringify } from 'yaml';
import { eventually } from './services.js';

export const MONITORING = resolve(import.meta.dirname, '../../monitoring');
const run = promisify(execFile);

/**
 * For suites that run promtool or prometheus (Debian package prometheus, installed by `npm run services`): skips
 * with a loud notice when the command is missing, and fails instead under REQUIRE_SERVICES=1 (set by .ci/run).
 */
export function requireCommand(command: 'promtool' | 'prometheus') {
  return async function (this: Context): Promise<void> {
    const found = await run(command, ['--version']).then(
      () => true,
      () => false,
    );
    if (found) return;
    const message = `${command} not found on PATH; run \`npm run services\` (installs the Debian package prometheus)`;
    if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${message} (REQUIRE_SERVICES=1)`);
    process.stderr.write(`\n  !!! SKIPPING ${this.test?.parent?.fullTitle() ?? 'suite'}: ${message}\n\n`);
    this.skip();
  };
}

export interface PrometheusAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
  value: string;
}

export interface PrivatePrometheus {
  url: string;
  /** The alerts Prometheus holds now (GET /api/v1/alerts). */
  alerts(): Promise<PrometheusAlert[]>;
  /** Each scrape target's job and health (GET /api/v1/targets). */
  targets(): Promise<Array<{ job: string; health: string }>>;
  /** The process's output, for a failure message. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * A real Prometheus on a private port, in a temporary directory, with monitoring/prometheus.yml as the project ships
 * it except for what a test must change: the scrape and evaluation interval, the rule file's absolute path, and each
 * job's targets. Jobs the test does not name keep no target.
 */
export async function startPrometheus(options: { port: number; intervalSeconds: number; targets: Record<string, string[]> }): Promise<PrivatePrometheus> {
  const shipped = parse(readFileSync(join(MONITORING, 'prometheus.yml'), 'utf8')) as {
    global: Record<string, unknown>;
    rule_files: string[];
    scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
  };
  for (const job of Object.keys(options.targets)) {
    if (!shipped.scrape_configs.some((c) => c.job_name === job)) throw new Error(`monitoring/prometheus.yml has no job ${job}`);
  }
  const interval = `${options.intervalSeconds}s`;
  const config = {
    ...shipped,
    global: { ...shipped.global, scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    rule_files: shipped.rule_files.map((file) => resolve(MONITORING, file)),
    scrape_configs: shipped.scrape_configs.map((c) => ({ ...c, static_configs: [{ targets: options.targets[c.job_name] ?? [] }] })),
  };
  const dir = mkdtempSync(join(tmpdir(), 'prometheus-test-'));
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
  const url = `http://127.0.0.1:${options.port}`;
  const child: ChildProcess = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${options.port}`, '--log.level=warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  for (const stream of [child.stdout!, child.stderr!]) stream.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));

  const prometheus: PrivatePrometheus = {
    url,
    async alerts() {
      const body = (await (await fetch(`${url}/api/v1/alerts`, { signal: AbortSignal.timeout(2000) })).json()) as { data: { alerts: PrometheusAlert[] } };
      return body.data.alerts;
    },
    async targets() {
      const body = (await (await fetch(`${url}/api/v1/targets`, { signal: AbortSignal.timeout(2000) })).json()) as {
        data: { activeTargets: Array<{ labels: { job: string }; health: string }> };
      };
      return body.data.activeTargets.map((t) => ({ job: t.labels.job, health: t.health }));
    },
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await eventually(async () => child.exitCode === null && (await fetch(`${url}/-/ready`)).ok, 20_000, 100);
  } catch (error) {
    await prometheus.stop();
    throw new Error(`prometheus did not become ready on ${url}: ${(error as Error).message}\n${output}`);
  }
  return prometheus;
}
