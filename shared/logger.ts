import { Writable } from 'node:stream';
import winston from 'winston';
import type { LogConfig, LogLevel } from './config.js';

/** The only logging surface services see; a winston logger satisfies it. */
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  log(level: LogLevel, message: string, meta?: Record<string, unknown>): void;
  child(meta: Record<string, unknown>): Logger;
}

/**
 * A line's fields (nodeId, reason, statusVersion, durationMs, ...) are for JSON logs, where they can be searched; a
 * text line is the human wording alone, exactly as documented (its words say what the fields hold).
 */
const text = winston.format.printf((info) => {
  const { timestamp, level, message, component } = info as Record<string, unknown>;
  return `${String(timestamp)} ${String(level).toUpperCase().padEnd(5)} [${String(component ?? 'main')}] ${String(message)}`;
});

/**
 * Human-readable timestamped lines by default, worded as users grep for them (docs/reference.md), JSON lines with
 * LOG_FORMAT=json.
 * Writes to stdout; pass `stream` to capture lines in tests.
 */
export function createLogger(config: Pick<LogConfig, 'level' | 'format'>, stream: NodeJS.WritableStream = process.stdout): Logger {
  const format =
    config.format === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: false }), winston.format.json())
      : winston.format.combine(winston.format.timestamp(), text);
  return winston.createLogger({
    level: config.level,
    format,
    transports: [new winston.transports.Stream({ stream })],
  }) as unknown as Logger;
}

/** A logger that keeps lines in memory: for tests that assert log wording. */
export function createMemoryLogger(level: LogLevel = 'debug'): Logger & { lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc: string, done: () => void) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level, format: 'text' }, stream) as Logger & { lines: string[] };
  logger.lines = lines;
  return logger;
}
