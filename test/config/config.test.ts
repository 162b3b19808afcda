import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseEnv } from 'node:util';
import { expect } from 'chai';
import { ConfigError, loadAgentConfig, loadOrchestratorConfig as loadConfig, redact, splitUrlList } from '../../shared/config.js';

type Env = Record<string, string | undefined>;

/** These tests are about other settings; agent authentication (on by default) is tested in test/security/auth-config.test.ts. */
const loadOrchestratorConfig = (env: Env) => loadConfig({ AUTH_MODE: 'off', ...env });

/** Runs `load` expecting a ConfigError and returns it, so a test can read every problem at once. */
function configError(load: () => unknown): ConfigError {
  try {
    load();
  } catch (error) {
    expect(error).to.be.instanceOf(ConfigError);
    return error as ConfigError;
  }
  expect.fail('expected a ConfigError');
}

describe('loadOrchestratorConfig', () => {
  describe('defaults (docs/reference.md)', () => {
    const config = loadOrchestratorConfig({});

    it('connects to the local RabbitMQ, MongoDB and Redis', () => {
      expect(config.rabbitmqUrl).to.equal('amqp://guest:guest@127.0.0.1:5672');
      expect(config.mongoUrl).to.equal('mongodb://127.0.0.1:27017/orchestrator');
      expect(config.redisUrl).to.equal('redis://127.0.0.1:6379');
    });

    it('listens on port 8080', () => {
      expect(config.port).to.equal(8080);
    });

    it('sweeps every 120000 ms and times nodes out after 3 minutes', () => {
      expect(config.sweepIntervalMs).to.equal(120000);
      expect(config.timeoutMs).to.equal(3 * 60 * 1000);
    });

    it('logs at info', () => {
      expect(config.log.level).to.equal('info');
    });

    it('treats an empty or blank variable as unset', () => {
      const blank = loadOrchestratorConfig({ PORT: '', HEALTH_CHECK_INTERVAL: '  ', TIMEOUT_MINUTES: '', LOG_LEVEL: '' });
      expect(blank.port).to.equal(8080);
      expect(blank.sweepIntervalMs).to.equal(120000);
      expect(blank.timeoutMs).to.equal(180000);
      expect(blank.log.level).to.equal('info');
    });
  });

  describe('set values', () => {
    it('honours every variable of the orchestrator table', () => {
      const config = loadOrchestratorConfig({
        RABBITMQ_URL: 'amqp://orchestrator:secret@rabbitmq:5672',
        MONGO_URL: 'mongodb://mongo:27017/nodes',
        REDIS_URL: 'redis://redis:6380',
        PORT: '9090',
        HEALTH_CHECK_INTERVAL: '15000',
        TIMEOUT_MINUTES: '5',
        LOG_LEVEL: 'debug',
      });
      expect(config.rabbitmqUrl).to.equal('amqp://orchestrator:secret@rabbitmq:5672');
      expect(config.mongoUrl).to.equal('mongodb://mongo:27017/nodes');
      expect(config.redisUrl).to.equal('redis://redis:6380');
      expect(config.port).to.equal(9090);
      expect(config.sweepIntervalMs).to.equal(15000);
      expect(config.timeoutMs).to.equal(5 * 60 * 1000);
      expect(config.log.level).to.equal('debug');
    });

    it('takes HEARTBEAT_INTERVAL as the sweep interval when HEALTH_CHECK_INTERVAL is unset', () => {
      expect(loadOrchestratorConfig({ HEARTBEAT_INTERVAL: '30000' }).sweepIntervalMs).to.equal(30000);
    });

    it('prefers HEALTH_CHECK_INTERVAL when both are set', () => {
      expect(loadOrchestratorConfig({ HEALTH_CHECK_INTERVAL: '10000', HEARTBEAT_INTERVAL: '30000' }).sweepIntervalMs).to.equal(10000);
    });

    it('ignores a HEARTBEAT_INTERVAL that HEALTH_CHECK_INTERVAL overrides, even a bad one', () => {
      // A shared env file may carry the agent's HEARTBEAT_INTERVAL in seconds; the orchestrator must not trip on it.
      expect(loadOrchestratorConfig({ HEALTH_CHECK_INTERVAL: '10000', HEARTBEAT_INTERVAL: 'soon' }).sweepIntervalMs).to.equal(10000);
    });

    it('accepts a fraction of a minute as TIMEOUT_MINUTES (0.5 = 30 s)', () => {
      expect(loadOrchestratorConfig({ TIMEOUT_MINUTES: '0.5' }).timeoutMs).to.equal(30000);
    });
  });

  describe('bad values', () => {
    it('rejects text where a number belongs, naming the variable', () => {
      const error = configError(() => loadOrchestratorConfig({ PORT: 'eighty' }));
      expect(error.message).to.include('PORT');
      expect(error.problems).to.have.length(1);
    });

    for (const value of ['0', '-1', '-120000']) {
      it(`rejects HEALTH_CHECK_INTERVAL=${value}`, () => {
        expect(configError(() => loadOrchestratorConfig({ HEALTH_CHECK_INTERVAL: value })).message).to.include('HEALTH_CHECK_INTERVAL');
      });
    }

    it('rejects a zero or negative HEARTBEAT_INTERVAL when it is the one in use', () => {
      expect(configError(() => loadOrchestratorConfig({ HEARTBEAT_INTERVAL: '0' })).message).to.include('HEARTBEAT_INTERVAL');
      expect(configError(() => loadOrchestratorConfig({ HEARTBEAT_INTERVAL: '-5' })).message).to.include('HEARTBEAT_INTERVAL');
    });

    it("refuses a HEARTBEAT_INTERVAL below a second as the sweep interval: it was meant in the agent's seconds", () => {
      const error = configError(() => loadOrchestratorConfig({ HEARTBEAT_INTERVAL: '10' }));
      expect(error.message).to.include('HEARTBEAT_INTERVAL=10 would run the timeout sweep every 10 ms');
      expect(error.message).to.include('HEALTH_CHECK_INTERVAL');
      expect(loadOrchestratorConfig({ HEARTBEAT_INTERVAL: '10', HEALTH_CHECK_INTERVAL: '10000' }).sweepIntervalMs).to.equal(10000);
    });

    it('reads METRICS_PORT as a port, or none when unset', () => {
      expect(loadOrchestratorConfig({}).metricsPort).to.equal(null);
      expect(loadOrchestratorConfig({ METRICS_PORT: '9101' }).metricsPort).to.equal(9101);
      expect(configError(() => loadOrchestratorConfig({ METRICS_PORT: '70000' })).message).to.include('METRICS_PORT');
    });

    it('rejects a zero, negative or non-numeric TIMEOUT_MINUTES', () => {
      for (const value of ['0', '-3', 'three']) {
        expect(configError(() => loadOrchestratorConfig({ TIMEOUT_MINUTES: value })).message, value).to.include('TIMEOUT_MINUTES');
      }
    });

    it('takes HEARTBEAT_MAX_RATE (default 100, 0 turns the pace off) and refuses a negative or non-numeric one', () => {
      expect(loadOrchestratorConfig({}).pace).to.deep.equal({ maxRate: 100, minChangeMs: 60_000 });
      expect(loadOrchestratorConfig({ HEARTBEAT_MAX_RATE: '0' }).pace.maxRate).to.equal(0);
      expect(loadOrchestratorConfig({ HEARTBEAT_MAX_RATE: '2.5', HEARTBEAT_PACE_MIN_CHANGE_MS: '5000' }).pace).to.deep.equal({ maxRate: 2.5, minChangeMs: 5000 });
      for (const value of ['-1', 'fast']) {
        expect(configError(() => loadOrchestratorConfig({ HEARTBEAT_MAX_RATE: value })).message, value).to.include('HEARTBEAT_MAX_RATE');
      }
      expect(configError(() => loadOrchestratorConfig({ HEARTBEAT_PACE_MIN_CHANGE_MS: '0' })).message).to.include('HEARTBEAT_PACE_MIN_CHANGE_MS');
    });

    it('rejects an unknown LOG_LEVEL and a URL of the wrong kind', () => {
      expect(configError(() => loadOrchestratorConfig({ LOG_LEVEL: 'loud' })).message).to.include('LOG_LEVEL');
      expect(configError(() => loadOrchestratorConfig({ MONGO_URL: 'http://mongo' })).message).to.include('MONGO_URL');
    });

    it('names every bad variable in one ConfigError', () => {
      const error = configError(() => loadOrchestratorConfig({ PORT: 'x', HEALTH_CHECK_INTERVAL: '0', TIMEOUT_MINUTES: '-1', RABBITMQ_URL: 'not a url', LOG_LEVEL: 'loud' }));
      for (const name of ['PORT', 'HEALTH_CHECK_INTERVAL', 'TIMEOUT_MINUTES', 'RABBITMQ_URL', 'LOG_LEVEL']) {
        expect(error.message, name).to.include(name);
      }
      expect(error.problems).to.have.length(5);
      expect(error.code).to.equal('CONFIG_INVALID');
    });

    it('refuses a canary interval longer than a sixth of the timeout, and derives one that fits', () => {
      expect(configError(() => loadOrchestratorConfig({ TIMEOUT_MINUTES: '1', CANARY_INTERVAL_MS: '20000' })).message).to.include(
        'CANARY_INTERVAL_MS must be at most a sixth of the timeout (10000 ms)',
      );
      expect(loadOrchestratorConfig({}).canaryIntervalMs).to.equal(5000);
      expect(loadOrchestratorConfig({ TIMEOUT_MINUTES: '0.005' }).canaryIntervalMs).to.be.at.most(50);
    });

    it('keeps a broker password out of the message', () => {
      const error = configError(() => loadOrchestratorConfig({ RABBITMQ_URL: 'http://user:hunter2@rabbitmq' }));
      expect(error.message).to.include('RABBITMQ_URL').and.not.include('hunter2');
    });

    it('names the bad entry of a RABBITMQ_URL list, and keeps every password of the list out of the message', () => {
      const error = configError(() => loadOrchestratorConfig({ RABBITMQ_URL: 'amqp://u:first-secret@b1,http://u:second-secret@b2,amqp://u:third-secret@b3' }));
      expect(error.problems).to.have.length(1);
      expect(error.message).to.include('RABBITMQ_URL entry 2 must be a amqp: or amqps: URL');
      for (const secret of ['first-secret', 'second-secret', 'third-secret']) expect(error.message).to.not.include(secret);
      expect(configError(() => loadOrchestratorConfig({ RABBITMQ_URL: 'amqp://b1,' })).message).to.include('RABBITMQ_URL has an empty entry');
    });

    it('refuses a REDIS_URL in the Sentinel form that names no primary, without its password', () => {
      const error = configError(() => loadOrchestratorConfig({ REDIS_URL: 'redis+sentinel://:hunter2@s1:26379,s2:26379' }));
      expect(error.message).to.include('REDIS_URL names no primary').and.not.include('hunter2');
      expect(configError(() => loadOrchestratorConfig({ REDIS_URL: 'http://redis' })).message).to.include('REDIS_URL must be a redis:, rediss: or redis+sentinel: URL');
    });
  });

  describe('cluster forms', () => {
    it('takes a comma-separated list of broker nodes as RABBITMQ_URL, in its order', () => {
      const list = 'amqp://orchestrator:secret@rabbit-1:5672, amqp://orchestrator:secret@rabbit-2:5672,amqps://orchestrator:secret@rabbit-3:5671/prod';
      const config = loadOrchestratorConfig({ RABBITMQ_URL: list });
      expect(splitUrlList(config.rabbitmqUrl)).to.deep.equal([
        'amqp://orchestrator:secret@rabbit-1:5672',
        'amqp://orchestrator:secret@rabbit-2:5672',
        'amqps://orchestrator:secret@rabbit-3:5671/prod',
      ]);
      expect(redact(config.rabbitmqUrl)).to.not.include('secret');
    });

    it('takes REDIS_URL in the Sentinel form', () => {
      const url = 'redis+sentinel://:secret@sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/orchestrator';
      expect(loadOrchestratorConfig({ REDIS_URL: url }).redisUrl).to.equal(url);
      expect(redact(url)).to.equal('redis+sentinel://:***@sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/orchestrator');
    });

    it('takes a MongoDB replica-set URL as it is', () => {
      const url = 'mongodb://mongo-1:27017,mongo-2:27017,mongo-3:27017/orchestrator?replicaSet=rs0';
      expect(loadOrchestratorConfig({ MONGO_URL: url }).mongoUrl).to.equal(url);
      expect(loadOrchestratorConfig({ MONGO_URL: 'mongodb+srv://user:secret@cluster0.example.net/orchestrator?retryWrites=true' }).mongoUrl).to.include('mongodb+srv:');
      expect(configError(() => loadOrchestratorConfig({ MONGO_URL: 'mongodb://u:secret@mongo-1:27017,:27017/db' })).message)
        .to.include('MONGO_URL has a bad host ":27017"')
        .and.not.include('secret');
      expect(configError(() => loadOrchestratorConfig({ MONGO_URL: 'postgres://db' })).message).to.include('MONGO_URL must be a mongodb: or mongodb+srv: URL');
    });
  });

  it('returns a frozen config', () => {
    const config = loadOrchestratorConfig({});
    expect(Object.isFrozen(config)).to.equal(true);
    expect(Object.isFrozen(config.log)).to.equal(true);
    expect(Object.isFrozen(config.sweep.massSilence)).to.equal(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).to.throw(TypeError);
  });
});

describe('loadAgentConfig', () => {
  describe('defaults (docs/reference.md)', () => {
    const config = loadAgentConfig({});

    it('uses the host name as NODE_ID', () => {
      expect(config.nodeId).to.equal(hostname());
    });

    it('talks to the local api and has no broker', () => {
      expect(config.orchestratorUrl).to.equal('http://127.0.0.1:8080');
      expect(config.rabbitmqUrl).to.equal(undefined);
    });

    it('heartbeats every 60 s, gives up on a beat after 10 s and re-registers after 3 failures', () => {
      expect(config.heartbeatIntervalMs).to.equal(60000);
      expect(config.heartbeatTimeoutMs).to.equal(10000);
      expect(config.maxHeartbeatFailures).to.equal(3);
    });

    it('reports 20 servers and leaves host name and address to detection', () => {
      expect(config.maxServers).to.equal(20);
      expect(config.hostname).to.equal(undefined);
      expect(config.ipAddress).to.equal(undefined);
    });

    it('counts containers through /var/run/docker.sock', () => {
      expect(config.dockerSocket).to.equal('/var/run/docker.sock');
    });
  });

  it('honours every variable of the agent table', () => {
    const config = loadAgentConfig({
      NODE_ID: 'node.a-1',
      ORCHESTRATOR_URL: 'https://orchestrator.example:8443/',
      RABBITMQ_URL: 'amqps://agent:secret@broker:5671',
      HEARTBEAT_INTERVAL: '30',
      HEARTBEAT_TIMEOUT: '2.5',
      MAX_HEARTBEAT_FAILURES: '5',
      MAX_SERVERS: '0',
      HOSTNAME: 'game-host-7',
      IP_ADDRESS: '10.0.0.7',
      DOCKER_SOCKET: '/run/user/1000/docker.sock',
    });
    expect(config.nodeId).to.equal('node.a-1');
    expect(config.orchestratorUrl).to.equal('https://orchestrator.example:8443');
    expect(config.rabbitmqUrl).to.equal('amqps://agent:secret@broker:5671');
    expect(config.heartbeatIntervalMs).to.equal(30000);
    expect(config.heartbeatTimeoutMs).to.equal(2500);
    expect(config.maxHeartbeatFailures).to.equal(5);
    expect(config.maxServers).to.equal(0);
    expect(config.hostname).to.equal('game-host-7');
    expect(config.ipAddress).to.equal('10.0.0.7');
    expect(config.dockerSocket).to.equal('/run/user/1000/docker.sock');
  });

  describe('bad values', () => {
    it('rejects text where a number belongs, naming the variable', () => {
      expect(configError(() => loadAgentConfig({ MAX_SERVERS: 'twenty' })).message).to.include('MAX_SERVERS');
      expect(configError(() => loadAgentConfig({ HEARTBEAT_INTERVAL: '1m' })).message).to.include('HEARTBEAT_INTERVAL');
    });

    for (const [name, value] of [
      ['HEARTBEAT_INTERVAL', '0'],
      ['HEARTBEAT_INTERVAL', '-60'],
      ['HEARTBEAT_TIMEOUT', '0'],
      ['HEARTBEAT_TIMEOUT', '-1'],
      ['MAX_HEARTBEAT_FAILURES', '0'],
    ] as const) {
      it(`rejects ${name}=${value}`, () => {
        expect(configError(() => loadAgentConfig({ [name]: value })).message).to.include(name);
      });
    }

    it('rejects a fractional MAX_HEARTBEAT_FAILURES and a negative MAX_SERVERS', () => {
      expect(configError(() => loadAgentConfig({ MAX_HEARTBEAT_FAILURES: '2.5' })).message).to.include('MAX_HEARTBEAT_FAILURES');
      expect(configError(() => loadAgentConfig({ MAX_SERVERS: '-1' })).message).to.include('MAX_SERVERS');
    });

    it('rejects a HEARTBEAT_TIMEOUT equal to HEARTBEAT_INTERVAL', () => {
      const error = configError(() => loadAgentConfig({ HEARTBEAT_INTERVAL: '10', HEARTBEAT_TIMEOUT: '10' }));
      expect(error.message).to.include('HEARTBEAT_TIMEOUT').and.include('HEARTBEAT_INTERVAL');
    });

    it('rejects a HEARTBEAT_TIMEOUT longer than the default HEARTBEAT_INTERVAL', () => {
      expect(configError(() => loadAgentConfig({ HEARTBEAT_TIMEOUT: '90' })).message).to.include('HEARTBEAT_TIMEOUT');
    });

    it('rejects a NODE_ID outside the node id alphabet and a URL of the wrong kind', () => {
      expect(configError(() => loadAgentConfig({ NODE_ID: 'node 1' })).message).to.include('NODE_ID');
      expect(configError(() => loadAgentConfig({ NODE_ID: 'n'.repeat(65) })).message).to.include('NODE_ID');
      expect(configError(() => loadAgentConfig({ ORCHESTRATOR_URL: 'ftp://api' })).message).to.include('ORCHESTRATOR_URL');
      expect(configError(() => loadAgentConfig({ RABBITMQ_URL: 'http://broker' })).message).to.include('RABBITMQ_URL');
      expect(configError(() => loadAgentConfig({ RABBITMQ_URL: 'amqp://b1,broker-2' })).message).to.include('RABBITMQ_URL entry 2');
    });

    it('takes a comma-separated list of broker nodes as RABBITMQ_URL', () => {
      const config = loadAgentConfig({ RABBITMQ_URL: 'amqp://agent:secret@rabbit-1,amqp://agent:secret@rabbit-2' });
      expect(splitUrlList(config.rabbitmqUrl!)).to.deep.equal(['amqp://agent:secret@rabbit-1', 'amqp://agent:secret@rabbit-2']);
    });

    it('names every bad variable in one ConfigError', () => {
      const error = configError(() =>
        loadAgentConfig({ HEARTBEAT_INTERVAL: '5', HEARTBEAT_TIMEOUT: '8', MAX_HEARTBEAT_FAILURES: 'many', MAX_SERVERS: '-3', ORCHESTRATOR_URL: 'nope' }),
      );
      for (const name of ['HEARTBEAT_TIMEOUT', 'MAX_HEARTBEAT_FAILURES', 'MAX_SERVERS', 'ORCHESTRATOR_URL']) {
        expect(error.message, name).to.include(name);
      }
      expect(error.problems).to.have.length(4);
    });
  });

  it('returns a frozen config', () => {
    const config = loadAgentConfig({});
    expect(Object.isFrozen(config)).to.equal(true);
    expect(Object.isFrozen(config.log)).to.equal(true);
    expect(Object.isFrozen(config.registration)).to.equal(true);
    expect(() => {
      (config as { nodeId: string }).nodeId = 'other';
    }).to.throw(TypeError);
  });
});

describe('.env.development', () => {
  const env: Env = parseEnv(readFileSync(new URL('../../.env.development', import.meta.url), 'utf8'));

  it('makes the orchestrator sweep every 10 s and time nodes out after 30 s', () => {
    const config = loadOrchestratorConfig(env);
    expect(config.sweepIntervalMs).to.equal(10000);
    expect(config.timeoutMs).to.equal(30000);
  });

  it('logs every heartbeat at info on the orchestrator', () => {
    expect(loadOrchestratorConfig(env).log.heartbeatLevel).to.equal('info');
  });

  it('makes the agent heartbeat every 10 s, give up on a beat after 5 s and re-register after 2 failures', () => {
    const config = loadAgentConfig(env);
    expect(config.heartbeatIntervalMs).to.equal(10000);
    expect(config.heartbeatTimeoutMs).to.equal(5000);
    expect(config.maxHeartbeatFailures).to.equal(2);
  });
});
