import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { envFileSetting, type Env } from '../../shared/config.js';

export const DEFAULT_ENV_FILE = '.env.development';

export interface LoadedEnv {
  /** The env file's settings overlaid with the real environment (which wins). */
  env: Env;
  /** The file that was read, or null when none was (ENV_FILE=none, or the default file is absent). */
  file: string | null;
}

/**
 * The all-in-one's environment: ENV_FILE (default `.env.development`, relative to `cwd`) parsed with
 * node:util parseEnv, then the real environment on top, so `PORT=9000 npm start` overrides the file.
 * ENV_FILE=none reads no file. A missing default file is fine (the built-in defaults apply); a missing ENV_FILE
 * that was asked for by name is an error.
 */
export function loadEnvWithFile(real: Env, cwd: string = process.cwd()): LoadedEnv {
  const asked = envFileSetting(real);
  if (asked === 'none') return { env: { ...real }, file: null };
  const file = resolve(cwd, asked || DEFAULT_ENV_FILE);
  if (!existsSync(file)) {
    if (asked) throw new Error(`ENV_FILE ${file} does not exist (set ENV_FILE=none to read no file)`);
    return { env: { ...real }, file: null };
  }
  const fromFile = parseEnv(readFileSync(file, 'utf8')) as Env;
  const env: Env = { ...fromFile };
  for (const [name, value] of Object.entries(real)) if (value !== undefined) env[name] = value;
  return { env, file };
}
