import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { parse } from 'yaml';
import { createMetrics } from '../../shared/metrics.js';
import { MONITORING, requireCommand } from '../support/prometheus.js';

const ROOT = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

interface AlertRule {
  alert: string;
  expr: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

function alertRules(): AlertRule[] {
  const file = parse(readFileSync(resolve(MONITORING, 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: AlertRule[] }> };
  return file.groups.flatMap((g) => g.rules);
}

/** GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens. */
function anchor(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** Runs promtool in monitoring/ and returns its output; a failure carries promtool's own report. */
async function promtool(...args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd: MONITORING });
    return stdout + stderr;
  } catch (error) {
    const e = error as Error & { stdout?: string; stderr?: string };
    throw new Error(`promtool ${args.join(' ')} failed:\n${e.stdout ?? ''}${e.stderr ?? e.message}`);
  }
}

describe('monitoring: alert rules (promtool) @int', () => {
  describe('with promtool', () => {
    before(requireCommand('promtool'));

    it('passes its unit tests (promtool test rules monitoring/alerts.test.yml)', async () => {
      const output = await promtool('test', 'rules', 'alerts.test.yml');
      expect(output).to.include('SUCCESS');
    });

    it('is a valid rule file that monitoring/prometheus.yml loads (promtool check config)', async () => {
      const output = await promtool('check', 'config', 'prometheus.yml');
      expect(output).to.include(`SUCCESS: ${alertRules().length} rules found`);
    });
  });

  it('gives every alert a severity, a summary, a description and a runbook_url naming a section of docs/operations.md', () => {
    const operations = readFileSync(resolve(ROOT, 'docs/operations.md'), 'utf8');
    const anchors = new Set([...operations.matchAll(/^#{2,4} (.+)$/gm)].map((m) => anchor(m[1]!)));
    const rules = alertRules();
    expect(rules.length).to.be.greaterThan(0);
    for (const rule of rules) {
      expect(rule.labels?.severity, rule.alert).to.be.oneOf(['warning', 'critical']);
      expect(rule.annotations?.summary, rule.alert).to.be.a('string').that.is.not.equal('');
      expect(rule.annotations?.description, rule.alert).to.be.a('string').that.is.not.equal('');
      const url = rule.annotations?.runbook_url ?? '';
      expect(url, rule.alert).to.match(/^docs\/operations\.md#/);
      expect([...anchors], `${rule.alert}: ${url}`).to.include(url.split('#')[1]);
      // The runbook section names the alert it is for.
      expect(url.split('#')[1], `${rule.alert}: its section's heading names it`).to.include(rule.alert.toLowerCase());
    }
  });

  it('uses only metrics that the services register', async () => {
    const registered = new Set((await createMetrics({ defaultMetrics: true }).registry.getMetricsAsJSON()).map((m) => m.name));
    for (const rule of alertRules()) {
      for (const [name] of rule.expr.matchAll(/\b(?:orchestrator|process|nodejs)_[a-z_]+\b/g)) {
        const base = name.replace(/_(bucket|count|sum)$/, '');
        expect(registered.has(base) || registered.has(name), `${rule.alert} uses ${name}`).to.equal(true);
      }
    }
  });

  it('has a promtool unit test in which each alert fires, and one in which it does not', () => {
    const tests = parse(readFileSync(resolve(MONITORING, 'alerts.test.yml'), 'utf8')) as {
      tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const rule of alertRules()) {
      const mine = cases.filter((c) => c.alertname === rule.alert);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length > 0),
        `${rule.alert} fires in a test`,
      ).to.equal(true);
      expect(
        mine.some((c) => (c.exp_alerts ?? []).length === 0),
        `${rule.alert} stays quiet in a test`,
      ).to.equal(true);
    }
  });

  it('scrapes the api, the ingest and the sweeper, and loads the rules (monitoring/prometheus.yml)', () => {
    const config = parse(readFileSync(resolve(MONITORING, 'prometheus.yml'), 'utf8')) as {
      rule_files: string[];
      scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
    };
    expect(config.rule_files).to.deep.equal(['alerts.yml']);
    const jobs = Object.fromEntries(config.scrape_configs.map((c) => [c.job_name, c.static_configs.flatMap((s) => s.targets)]));
    expect(Object.keys(jobs).sort()).to.deep.equal(['api', 'ingest', 'sweeper']);
    for (const targets of Object.values(jobs)) expect(targets).to.have.length.greaterThan(0);
  });
});
