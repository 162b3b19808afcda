import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { portOpen } from '../support/private-services.js';
import { formCluster, type Cluster } from './cluster.js';

const run = promisify(execFile);

/**
 * The harness itself: it forms the cluster, and leaves nothing behind. The forming time is printed, not asserted
 * (21-35 s on a quiet machine, up to ~70 s on a loaded one): the machines are shared.
 */
describe('cluster harness @int @cluster', function () {
  this.timeout(180_000);
  let cluster: Cluster | undefined;
  let ports: number[] = [];

  after(async () => {
    await cluster?.close();
  });

  it('forms a 3-node RabbitMQ cluster, a Redis primary and replica under three Sentinels, and a FerretDB', async () => {
    cluster = await formCluster();
    console.log(`    cluster formed in ${(cluster.formedInMs / 1000).toFixed(1)} s`);
    const { rabbit, redis, ferret } = cluster;
    ports = [...rabbit.nodes.flatMap((n) => [n.port, n.port + 20000]), ...redis.servers.map((s) => s.port), ...redis.sentinelPorts, ferret.port];

    expect((await rabbit.runningNodes()).sort()).to.deep.equal(rabbit.nodes.map((n) => n.name).sort());
    const exchanges = await rabbit.nodes[2]!.ctl('list_exchanges', '-q', 'name');
    expect(exchanges, 'the definitions were imported').to.contain('agent.inbound');

    const primary = await redis.agreedPrimary();
    expect(primary?.port, 'every Sentinel names the first server the primary').to.equal(redis.servers[0]!.port);
    expect(await redis.servers[1]!.role()).to.equal('slave');
    for (const view of await redis.sentinelView()) expect(view).to.deep.equal({ otherSentinels: 2, replicas: 1 });

    expect(await portOpen(ferret.port), 'FerretDB answers').to.equal(true);
  });

  it('stops everything it started and removes its data', async () => {
    expect(cluster, 'formed by the test before').to.not.equal(undefined);
    const dir = cluster!.dir;
    await cluster!.close();
    cluster = undefined;
    for (const port of ports) expect(await portOpen(port), `127.0.0.1:${port} closed`).to.equal(false);
    expect(existsSync(dir), `${dir} removed`).to.equal(false);
    const left = await run('pgrep', ['-af', join(dir, '')]).then(
      (r) => r.stdout.trim(),
      () => '',
    );
    expect(left, 'processes still running with the cluster dir in their command line').to.equal('');
  });
});
