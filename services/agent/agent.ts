import type { Bus } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { AgentConfig } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import { topology, type BrokerNames } from '../../shared/topology.js';
import { createControlListener, type ControlListener } from './control-listener.js';
import type { FailoverTransport } from './failover-transport.js';
import { createHeartbeatLoop } from './heartbeat-loop.js';
import { createHeartbeatPace, paceSettingsOf, type PaceStatus } from './heartbeat-pace.js';
import type { MessageFactory } from './outbound-messages.js';
import { createRegistration } from './registration.js';
import type { StatsCollector } from './stats-collector.js';
import { sleep, withTimeout, type Timers } from './timers.js';
import { reasonOf, type TransportName } from './transport.js';

export type AgentConfigUsed = Pick<AgentConfig, 'nodeId' | 'maxServers' | 'heartbeatIntervalMs' | 'heartbeatTimeoutMs' | 'maxHeartbeatFailures' | 'registration' | 'startSpread'>;

export interface AgentDeps {
  config: AgentConfigUsed;
  identity: { hostname: string; ipAddress: string };
  transport: FailoverTransport;
  messages: MessageFactory;
  stats: StatsCollector;
  /** The broker, when RABBITMQ_URL is set: control messages come from it, and stop() closes it. */
  bus?: Bus;
  names: BrokerNames;
  /** Monotonic time for schedules and deadlines. */
  clock: Clock;
  timers: Timers;
  random: () => number;
  log: Logger;
}

export type AgentState = 'idle' | 'registering' | 'heartbeating' | 'stopping' | 'stopped';

export interface AgentStatus {
  state: AgentState;
  /** Successful registrations since start (re-registrations included). */
  registrations: number;
  /** Transport that took the last heartbeat. */
  lastTransport?: TransportName;
  /** The heartbeat interval followed now, and where it comes from. */
  pace: PaceStatus;
}

export interface Agent {
  /** Declares the broker topology and subscribes to control messages (when there is a broker), then registers and beats in the background. */
  start(): Promise<void>;
  /** Announces the shutdown and closes connections, within HEARTBEAT_TIMEOUT. */
  stop(): Promise<void>;
  status(): AgentStatus;
}

/** At start, how long the first registration waits for the broker connection before it goes over HTTP. */
export const BROKER_GRACE_MS = 2000;

/** Shares of HEARTBEAT_TIMEOUT for stop(): announce the shutdown within the first, close connections within the second. */
const ANNOUNCE_BUDGET = 0.7;
const CLOSE_BUDGET = 0.9;

/** The host agent: register (with back-off), beat until re-registration is needed, repeat; announce shutdown. */
export function createAgent(deps: AgentDeps): Agent {
  const { config, transport, messages, clock, timers, log, bus } = deps;
  const abort = new AbortController();
  let state: AgentState = 'idle';
  let registrations = 0;
  let lastTransport: TransportName | undefined;
  let lifecycle: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | null = null;
  let control: ControlListener | undefined;

  // Created before the loop it drives: onChange is only called once settings arrive, after start().
  const pace = createHeartbeatPace({
    ownIntervalMs: config.heartbeatIntervalMs,
    random: deps.random,
    timers,
    log,
    onChange: (ms, firstGapMs) => loop.changeInterval(ms, firstGapMs),
  });

  const registration = createRegistration({
    nodeId: config.nodeId,
    schedule: config.registration,
    timers,
    random: deps.random,
    log,
    attempt: async (signal) => {
      const body = {
        nodeId: config.nodeId,
        hostname: deps.identity.hostname,
        ipAddress: deps.identity.ipAddress,
        maxServers: config.maxServers,
        // Declared, so that the orchestrator may set a slower pace for a large fleet (heartbeat-pace.ts).
        heartbeatInterval: config.heartbeatIntervalMs / 1000,
      };
      const accepted = await transport.send(messages.register(body), { timeoutMs: config.heartbeatTimeoutMs, signal });
      log.debug(`Registration accepted over ${accepted.via}`);
      pace.registered(accepted.via, accepted.pace);
    },
  });

  const loop = createHeartbeatLoop({
    nodeId: config.nodeId,
    intervalMs: pace.intervalMs(),
    maxFailures: config.maxHeartbeatFailures,
    clock,
    timers,
    log,
    beat: async () => {
      const body = await deps.stats.collect();
      const accepted = await transport.send(messages.heartbeat(body), { timeoutMs: config.heartbeatTimeoutMs });
      lastTransport = accepted.via;
      if (accepted.pace) pace.told(accepted.pace);
    },
  });

  /** Resolves once the broker is connected, `ms` have passed, or the agent stops. */
  function brokerConnected(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (!bus || bus.isConnected() || abort.signal.aborted) return resolve();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        timers.clearTimeout(handle);
        abort.signal.removeEventListener('abort', finish);
        resolve();
      };
      const handle = timers.setTimeout(finish, ms);
      bus.onConnectionChange((connected) => connected && finish());
      abort.signal.addEventListener('abort', finish, { once: true });
    });
  }

  async function run(): Promise<void> {
    let first = true;
    // The connection is opened in the background: give it a moment so that the first registration uses it.
    await brokerConnected(Math.min(BROKER_GRACE_MS, config.heartbeatTimeoutMs));
    while (!abort.signal.aborted) {
      state = 'registering';
      pace.registering();
      try {
        await registration.register(abort.signal);
      } catch (error) {
        if (abort.signal.aborted) return;
        log.error(`Registration stopped unexpectedly, starting over: ${reasonOf(error)}`);
        // Cut short by stop(): the loop then sees the abort and ends.
        await sleep(timers, config.registration.firstDelayMs, abort.signal).catch(() => undefined);
        continue;
      }
      registrations++;
      if (abort.signal.aborted) return;
      state = 'heartbeating';
      // Only the first start is spread out: after a re-registration the orchestrator needs a beat now.
      const startOffsetMs = first ? deps.random() * config.startSpread * config.heartbeatIntervalMs : 0;
      first = false;
      const exit = await loop.run({ startOffsetMs });
      if (exit.kind === 'stopped') return;
    }
  }

  return {
    async start() {
      if (state !== 'idle') return;
      state = 'registering';
      if (bus) {
        // The whole topology, so that a message the broker confirms has a queue to land in even before the orchestrator ever ran.
        await bus.declareTopology(topology(deps.names)).catch((error: unknown) => log.warn(`Cannot declare the broker topology yet: ${reasonOf(error)}`));
        control = createControlListener({
          bus,
          names: deps.names,
          nodeId: config.nodeId,
          log,
          onReregister: (message) => {
            if (loop.requestReregistration()) log.info(`Orchestrator asked ${config.nodeId} to re-register (${message.reason})`);
          },
          onSettings: (message) => {
            const settings = paceSettingsOf(message);
            if (settings) pace.told(settings);
          },
        });
        await control.start();
      }
      lifecycle = run().catch((error: unknown) => log.error(`Agent loop failed: ${reasonOf(error)}`));
    },

    stop() {
      stopping ??= (async () => {
        state = 'stopping';
        const timeoutMs = config.heartbeatTimeoutMs;
        const started = clock.now();
        const deadline = started + ANNOUNCE_BUDGET * timeoutMs;
        const until = (ms: number, end = deadline) => Math.max(0, Math.min(ms, end - clock.now()));
        const closeBy = started + CLOSE_BUDGET * timeoutMs;
        abort.abort(new Error('agent stopping'));
        loop.stop();
        pace.stop();
        // A beat in flight gets a moment, so that it does not reach the orchestrator after the shutdown message.
        // A beat still in flight after its moment is left to finish on its own: the shutdown goes out anyway.
        await withTimeout(timers, loop.idle(), until(timeoutMs / 4), () => new Error('beat still in flight')).catch(() => undefined);
        if (registrations > 0) {
          try {
            const { via } = await transport.send(messages.shutdown(), { timeoutMs, deadline });
            log.info(`Shutdown announced to the orchestrator over ${via}`);
          } catch (error) {
            log.warn(`Could not announce the shutdown: ${reasonOf(error)}`);
          }
        }
        await control?.stop();
        // Stopping within its budget matters more than a clean close of a broker connection that hangs.
        if (bus) await withTimeout(timers, bus.close(), until(timeoutMs, closeBy), () => new Error('broker close timed out')).catch(() => undefined);
        await withTimeout(timers, lifecycle, until(timeoutMs, closeBy), () => new Error('loop still running')).catch(() => undefined);
        state = 'stopped';
      })();
      return stopping;
    },

    status: () => ({ state, registrations, lastTransport, pace: pace.status() }),
  };
}
