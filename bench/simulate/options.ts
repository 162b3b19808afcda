/**
 * Command line of `npm run simulate`: parsing, defaults derived from the interval, and the timeline of the
 * scripted events. Every option that cannot work is refused with one message naming each problem.
 */

export interface SimOptions {
  nodes: number;
  /** Heartbeat interval of every virtual agent, seconds. */
  intervalS: number;
  /** ± jitter of each beat, as a share of the interval (0..0.45). */
  jitter: number;
  /** Share of the nodes that talk HTTP (0..1). */
  httpShare: number;
  /** Share of the nodes that go silent (0..1). */
  silenceShare: number;
  /** Share of the nodes that announce a shutdown (0..1). */
  shutdownShare: number;
  /** Share of the silenced nodes that come back once detected (0..1). */
  returnShare: number;
  /** Length of the beating phase (after registration), seconds. */
  durationS: number;
  /** When the silence and shutdowns happen, seconds into the beating phase. */
  silenceAtS: number;
  /** From when the detected silenced nodes may come back, seconds into the beating phase. */
  returnAtS: number;
  /** Orchestrator TIMEOUT, seconds. */
  timeoutS: number;
  /** Orchestrator HEALTH_CHECK_INTERVAL, seconds. */
  sweepS: number;
  target: 'separate' | 'all-in-one';
  ingests: number;
  auth: boolean;
  /** Confirm channels on the one publisher connection. */
  channels: number;
  /** Keep-alive sockets to the api. */
  httpConnections: number;
  /** Nodes whose heartbeats are followed into the store for publish→stored. */
  sample: number;
  /** Shortest time between two poll rounds of the sample, ms. */
  pollMs: number;
  /** Registrations per second at start. */
  registerRate: number;
  /** Longest wait for every registration to be stored (node.registered seen), seconds. */
  registerWaitS: number;
  /** After --duration: longest extra time the fleet keeps beating while silenced nodes are still undetected, seconds. */
  detectWaitS: number;
  /** After the beats stopped: longest wait for the ingest to store what was confirmed, seconds. */
  drainWaitS: number;
  progressS: number;
  keep: boolean;
  logLevel: string;
  /** Extra environment for the services, from --env NAME=VALUE (repeatable). */
  serviceEnv: Record<string, string>;
  seed: number;
  /** Virtual agents that declare no interval (the original agent): they keep --interval and --timeout. */
  legacy: boolean;
  /** HEARTBEAT_MAX_RATE of the services (--env, else the environment, else 0: the fleet beats every --interval). */
  maxRate: number;
  /**
   * The pace the orchestrator should set once the whole fleet is ONLINE: interval max(--interval, ceil(nodes /
   * HEARTBEAT_MAX_RATE)) and timeout max(--timeout, 3 × interval), seconds. The defaults of the timeline use it;
   * the figures use what each node was actually told.
   */
  expected: { intervalS: number; timeoutS: number };
}

/** The orchestrator's default HEARTBEAT_MAX_RATE, and the ratio of timeout to interval it keeps (docs/reference.md). */
export const DEFAULT_MAX_RATE = 100;
const TIMEOUT_INTERVALS = 3;
/**
 * The simulator's own default HEARTBEAT_MAX_RATE: 0, no pace, so that `--nodes N --interval S` costs what N agents
 * beating every S seconds cost (what sizing a deployment asks). The orchestrator's pace is measured by asking for
 * it (`HEARTBEAT_MAX_RATE=100 npm run simulate -- …`).
 */
const SIMULATOR_MAX_RATE = 0;

export const USAGE = `usage: npm run simulate -- --nodes N --interval S [options]

  --nodes N             virtual agents (default 500)
  --interval S          heartbeat interval of each agent, seconds (default 5)
  --jitter PCT          each beat moved by up to ±PCT % of the interval (default 10, at most 45)
  --http-share PCT      % of the nodes that use HTTP instead of AMQP (default 10)
  --silence PCT         % of the nodes that go silent (stop beating, no shutdown) at --silence-at (default 1)
  --shutdown PCT        % of the nodes that announce a shutdown at --silence-at (default 0.5)
  --return PCT          % of the silenced nodes that come back once detected, from --return-at on (default 50)
  --duration S          beating phase after registration (default 3 × (timeout + 2 × sweep), at least 60; with the
                        timeout the orchestrator is expected to set)
  --silence-at S        when the silence starts, seconds into the run (default duration / 3)
  --return-at S         from when detected nodes come back (default 2 × duration / 3)
  --timeout S           orchestrator timeout (TIMEOUT_MINUTES; default 3 × interval)
  --legacy              the virtual agents declare no interval (the original agent): nothing sets their pace.
                        Without it they declare --interval and follow the pace the orchestrator sets
                        (HEARTBEAT_MAX_RATE, from the environment or --env; default 0 here: no pace, every
                        agent beats every --interval) with a ±10 % stagger
  --sweep S             sweep interval (HEALTH_CHECK_INTERVAL; default = interval)
  --target T            separate (ingest + sweeper + api processes, default) or all-in-one
  --ingests K           ingest replicas (separate target, default 1)
  --auth                agent authentication on: join token + a credential per node
  --channels C          confirm channels on the one AMQP connection (default 4)
  --http-connections C  keep-alive sockets to the api (default 16)
  --sample N            nodes followed into the store for publish→stored (default 150)
  --poll-ms MS          shortest time between two poll rounds of the sample (default 250)
  --register-rate R     registrations per second at start (default 1000)
  --register-wait S     longest wait for the registrations to be stored (default max(60, 3 × interval))
  --detect-wait S       extra beating time while silenced nodes are undetected (default timeout + 2 × sweep)
  --drain-wait S        after the beats stop, longest wait for the ingest to catch up (default max(30, timeout))
  --progress S          progress line every S seconds (default 5)
  --log-level L         services' LOG_LEVEL (default warn; their logs go to .cache/simulate/<run>/)
  --env NAME=VALUE      extra environment for the services (repeatable), e.g. --env INGEST_BATCH_SIZE=1000
  --seed N              random seed of phases, jitter and the choice of silenced nodes (default 1)
  --keep                keep the run's database, broker namespace and Redis keys
`;

export class OptionsError extends Error {}

const FLAGS = new Set(['auth', 'keep', 'help', 'legacy']);

export function parseOptions(argv: string[], environment: Record<string, string | undefined> = process.env): SimOptions {
  const raw = new Map<string, string>();
  const env: Record<string, string> = {};
  const problems: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      problems.push(`unexpected argument "${arg}"`);
      continue;
    }
    let name = arg.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    if (FLAGS.has(name)) {
      raw.set(name, value ?? 'true');
      continue;
    }
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) {
        problems.push(`--${name} needs a value`);
        continue;
      }
      i++;
    }
    if (name === 'env') {
      const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(value);
      if (!m) problems.push(`--env takes NAME=VALUE (got "${value}")`);
      else env[m[1]!] = m[2]!;
      continue;
    }
    raw.set(name, value);
  }
  if (raw.has('help')) throw new OptionsError(USAGE);

  const known = new Set([
    'nodes',
    'interval',
    'jitter',
    'http-share',
    'silence',
    'shutdown',
    'return',
    'duration',
    'silence-at',
    'return-at',
    'timeout',
    'sweep',
    'target',
    'ingests',
    'auth',
    'channels',
    'http-connections',
    'sample',
    'poll-ms',
    'register-rate',
    'register-wait',
    'detect-wait',
    'drain-wait',
    'progress',
    'log-level',
    'seed',
    'keep',
    'legacy',
  ]);
  for (const name of raw.keys()) if (!known.has(name)) problems.push(`unknown option --${name}`);

  const num = (name: string, fallback: number, rule: { min?: number; max?: number; integer?: boolean; above?: number } = {}): number => {
    const text = raw.get(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isFinite(value)) problems.push(`--${name} must be a number (got "${text}")`);
    else if (rule.integer && !Number.isInteger(value)) problems.push(`--${name} must be a whole number (got ${text})`);
    else if (rule.above !== undefined && value <= rule.above) problems.push(`--${name} must be greater than ${rule.above} (got ${text})`);
    else if (rule.min !== undefined && value < rule.min) problems.push(`--${name} must be at least ${rule.min} (got ${text})`);
    else if (rule.max !== undefined && value > rule.max) problems.push(`--${name} must be at most ${rule.max} (got ${text})`);
    else return value;
    return fallback;
  };

  const nodes = num('nodes', 500, { integer: true, min: 1, max: 200_000 });
  const intervalS = num('interval', 5, { above: 0, max: 3600 });
  const jitter = num('jitter', 10, { min: 0, max: 45 }) / 100;
  const httpShare = num('http-share', 10, { min: 0, max: 100 }) / 100;
  const silenceShare = num('silence', 1, { min: 0, max: 100 }) / 100;
  const shutdownShare = num('shutdown', 0.5, { min: 0, max: 100 }) / 100;
  const returnShare = num('return', 50, { min: 0, max: 100 }) / 100;
  const timeoutS = num('timeout', 3 * intervalS, { above: 0 });
  const sweepS = num('sweep', intervalS, { above: 0 });
  const legacy = raw.get('legacy') === 'true';
  const maxRateText = env.HEARTBEAT_MAX_RATE ?? environment.HEARTBEAT_MAX_RATE;
  const maxRate = maxRateText === undefined ? SIMULATOR_MAX_RATE : Number(maxRateText);
  if (maxRateText !== undefined && !(Number.isFinite(maxRate) && maxRate >= 0)) problems.push(`HEARTBEAT_MAX_RATE must be a number >= 0 (got "${maxRateText}")`);
  const expected = expectedPace({ nodes, intervalS, timeoutS, legacy, maxRate: Number.isFinite(maxRate) ? maxRate : DEFAULT_MAX_RATE });
  // The timeline waits for what the orchestrator is expected to set: a silenced node is detected a timeout after its last beat.
  const defaultDuration = Math.max(60, Math.ceil(3 * (expected.timeoutS + 2 * sweepS)));
  const durationS = num('duration', defaultDuration, { above: 0 });
  const silenceAtS = num('silence-at', durationS / 3, { min: 0 });
  const returnAtS = num('return-at', (2 * durationS) / 3, { min: 0 });
  const targetText = raw.get('target') ?? 'separate';
  const target = targetText === 'separate' || targetText === 'all-in-one' ? targetText : null;
  if (!target) problems.push(`--target must be separate or all-in-one (got "${targetText}")`);
  const ingests = num('ingests', 1, { integer: true, min: 1, max: 16 });
  const channels = num('channels', 4, { integer: true, min: 1, max: 64 });
  const httpConnections = num('http-connections', 16, { integer: true, min: 1, max: 1024 });
  const sample = num('sample', Math.min(150, nodes), { integer: true, min: 0, max: 5000 });
  const pollMs = num('poll-ms', 250, { min: 10 });
  const registerRate = num('register-rate', 1000, { above: 0 });
  const registerWaitS = num('register-wait', Math.max(60, 3 * intervalS), { above: 0 });
  const detectWaitS = num('detect-wait', expected.timeoutS + 2 * sweepS, { min: 0 });
  const drainWaitS = num('drain-wait', Math.max(30, timeoutS), { min: 0 });
  const progressS = num('progress', 5, { above: 0 });
  const seed = num('seed', 1, { integer: true });
  const logLevel = raw.get('log-level') ?? 'warn';

  // What cannot work.
  if (sweepS > timeoutS)
    problems.push(`--sweep (${sweepS} s) must not be longer than --timeout (${timeoutS} s): a silent node would wait a whole sweep interval beyond its timeout`);
  if (timeoutS <= intervalS) problems.push(`--timeout (${timeoutS} s) must be longer than --interval (${intervalS} s), or every node looks silent between two beats`);
  if (silenceShare + shutdownShare > 1) problems.push(`--silence + --shutdown is ${Math.round((silenceShare + shutdownShare) * 100)} %, more than all the nodes`);
  if (silenceAtS >= durationS) problems.push(`--silence-at (${silenceAtS} s) must be before the end of --duration (${durationS} s)`);
  const detectBy = silenceAtS + expected.timeoutS + sweepS;
  if (silenceShare > 0 && detectBy >= durationS) {
    const which = expected.timeoutS === timeoutS ? 'timeout' : `timeout the orchestrator is expected to set (max(--timeout, 3 × ${expected.intervalS} s))`;
    problems.push(
      `the silenced nodes cannot be detected within the run: silence at ${fmtS(silenceAtS)} + ${which} ${fmtS(expected.timeoutS)} + sweep ${fmtS(sweepS)} = ${fmtS(detectBy)} ` +
        `is not before the end of --duration ${fmtS(durationS)}; use --duration ${raw.has('silence-at') ? Math.ceil(detectBy + sweepS) : Math.ceil(1.5 * (expected.timeoutS + 2 * sweepS))} or more (or a shorter --timeout / --sweep / --silence-at)`,
    );
  }
  if (silenceShare > 0 && returnShare > 0 && returnAtS < silenceAtS) problems.push(`--return-at (${returnAtS} s) must not be before --silence-at (${silenceAtS} s)`);
  if (silenceShare > 0 && returnShare > 0 && returnAtS >= durationS)
    problems.push(`--return-at (${returnAtS} s) must be before the end of --duration (${durationS} s) for the silenced nodes to come back`);
  if (target === 'all-in-one' && ingests > 1) problems.push('--ingests applies to --target separate only (the all-in-one process has one ingest)');
  if (sample > nodes) problems.push(`--sample (${sample}) must not exceed --nodes (${nodes})`);
  if (!['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'].includes(logLevel)) problems.push(`--log-level must be one of error, warn, info, debug (got "${logLevel}")`);
  if (problems.length) throw new OptionsError(`simulate: ${problems.join('\n  ')}\n\n${USAGE}`);

  return {
    nodes,
    intervalS,
    jitter,
    httpShare,
    silenceShare,
    shutdownShare,
    returnShare,
    durationS,
    silenceAtS,
    returnAtS,
    timeoutS,
    sweepS,
    target: target!,
    ingests,
    auth: raw.get('auth') === 'true',
    channels,
    httpConnections,
    sample,
    pollMs,
    registerRate,
    registerWaitS,
    detectWaitS,
    drainWaitS,
    progressS,
    keep: raw.get('keep') === 'true',
    logLevel,
    serviceEnv: env,
    seed,
    legacy,
    maxRate,
    expected,
  };
}

/**
 * The pace of a whole fleet ONLINE, by the orchestrator's rule (docs/reference.md): interval max(declared,
 * ceil(nodes / HEARTBEAT_MAX_RATE)), timeout max(TIMEOUT_MINUTES, 3 × interval). Legacy agents, or a rate of 0,
 * keep their own.
 */
export function expectedPace(o: { nodes: number; intervalS: number; timeoutS: number; legacy: boolean; maxRate: number }): { intervalS: number; timeoutS: number } {
  if (o.legacy || o.maxRate <= 0) return { intervalS: o.intervalS, timeoutS: o.timeoutS };
  const intervalS = Math.max(o.intervalS, Math.ceil(o.nodes / o.maxRate));
  return { intervalS, timeoutS: Math.max(o.timeoutS, TIMEOUT_INTERVALS * intervalS) };
}

function fmtS(s: number): string {
  return `${Number(s.toFixed(1))} s`;
}
