import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { loadEnvWithFile } from '../../services/all-in-one/env-file.js';

describe('all-in-one environment', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'all-in-one-env-'));
    writeFileSync(join(dir, '.env.development'), '# fast timings\nHEALTH_CHECK_INTERVAL=10000\nTIMEOUT_MINUTES=0.5\nPORT=8080\n');
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads .env.development from the working directory by default', () => {
    const { env, file } = loadEnvWithFile({}, dir);
    expect(file).to.equal(join(dir, '.env.development'));
    expect(env).to.include({ HEALTH_CHECK_INTERVAL: '10000', TIMEOUT_MINUTES: '0.5', PORT: '8080' });
  });

  it('lets real environment variables win over the file', () => {
    const { env } = loadEnvWithFile({ PORT: '9000' }, dir);
    expect(env).to.include({ PORT: '9000', TIMEOUT_MINUTES: '0.5' });
  });

  it('reads no file with ENV_FILE=none, and falls back to the built-in defaults when the default file is absent', () => {
    expect(loadEnvWithFile({ ENV_FILE: 'none', PORT: '1' }, dir)).to.deep.equal({ env: { ENV_FILE: 'none', PORT: '1' }, file: null });
    rmSync(join(dir, '.env.development'));
    expect(loadEnvWithFile({}, dir)).to.deep.equal({ env: {}, file: null });
  });

  it('refuses an ENV_FILE that does not exist', () => {
    expect(() => loadEnvWithFile({ ENV_FILE: 'missing.env' }, dir)).to.throw(/ENV_FILE .*missing\.env does not exist/);
  });
});
