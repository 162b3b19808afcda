/**
 * The scheduler port: runs a named job every `intervalMs`, never two runs of it at once across every
 * process that schedules it. Adapters: BullMQ (Job Scheduler over Redis, global concurrency 1) and
 * in-process; test/contract/scheduler.contract.ts runs against both.
 */
export interface Scheduler {
  every(name: string, intervalMs: number, handler: () => Promise<void>): Promise<void>;
  /** True while the scheduler can reach its backend. */
  isReady(): Promise<boolean>;
  close(): Promise<void>;
}
