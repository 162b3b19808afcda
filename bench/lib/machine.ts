import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import amqp from 'amqplib';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { MONGO_URL, RABBITMQ_URL, REDIS_URL } from '../../test/support/services.js';

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  rabbitmq: string;
  store: string;
  redis: string;
  /** 1-minute load average when the run started: other engineers' tests share this machine. */
  loadAverage: number;
}

/** What the run ran on: printed with every table and kept in every JSON file. */
export async function describeMachine(): Promise<Machine> {
  const rabbitmq = await amqp
    .connect(RABBITMQ_URL)
    .then(async (c) => {
      const props = (c.connection as unknown as { serverProperties?: { version?: string; product?: string } }).serverProperties;
      await c.close();
      return `${props?.product ?? 'RabbitMQ'} ${props?.version ?? '?'}`;
    })
    .catch(() => 'unreachable');
  const store = await MongoClient.connect(MONGO_URL, { serverSelectionTimeoutMS: 3000 })
    .then(async (client) => {
      const info = await client.db('admin').command({ buildInfo: 1 });
      await client.close();
      return info.ferretdbVersion
        ? `FerretDB ${ferretVersion(String(info.ferretdbVersion))} (SQLite backend; MongoDB ${String(info.version)} wire)`
        : `MongoDB ${String(info.version)}`;
    })
    .catch(() => 'unreachable');
  const redis = await (async () => {
    const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      const info = await client.info('server');
      return `Redis ${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'}`;
    } catch {
      return 'unreachable';
    } finally {
      client.disconnect();
    }
  })();
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    rabbitmq,
    store,
    redis,
    loadAverage: Number(loadavg()[0]!.toFixed(2)),
  };
}

export function renderMachine(m: Machine): string {
  return `machine: ${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}; ${m.rabbitmq}; ${m.store}; ${m.redis}; load average ${m.loadAverage}`;
}

/** The embedded build reports "unknown": the version it was built from is in tools/ferretdb/go.mod. */
function ferretVersion(reported: string): string {
  if (reported !== 'unknown') return reported;
  try {
    const mod = readFileSync(new URL('../../tools/ferretdb/go.mod', import.meta.url), 'utf8');
    return /FerretDB\/FerretDB (v[\d.]+)/.exec(mod)?.[1] ?? reported;
  } catch {
    return reported;
  }
}
