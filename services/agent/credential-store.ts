import { constants } from 'node:fs';
import { access, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { generateCredential, isCredential } from '../../shared/auth/credentials.js';

/**
 * The agent's per-node credential (docs/security.md): generated once, kept in AGENT_CREDENTIAL_FILE
 * (mode 0600) so that a restarted agent can still speak for its node. Without a file it lives in memory:
 * after a restart the node id then needs an operator reset before it can register again.
 */
export async function loadOrCreateCredential(file: string | undefined): Promise<{ credential: string; created: boolean; persisted: boolean }> {
  if (!file) return { credential: generateCredential(), created: true, persisted: false };
  try {
    const stored = (await readFile(file, 'utf8')).trim();
    if (isCredential(stored)) return { credential: stored, created: false, persisted: true };
    throw new Error(`${file} does not hold a credential (delete it to let the agent create a new one, then have an operator reset the node)`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  const credential = generateCredential();
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  // Written whole or not at all: a crash never leaves a half credential behind.
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${credential}\n`, { mode: 0o600, flag: 'wx' });
  await rename(temporary, file);
  return { credential, created: true, persisted: true };
}

/** What the agent would find in AGENT_CREDENTIAL_FILE, read without changing anything (the preflight, `--check`). */
export type CredentialFileState =
  | { kind: 'unset' }
  /** Absent; `creatable` says whether the agent could write it (its nearest existing directory is writable). */
  | { kind: 'missing'; creatable: boolean; directory: string }
  | { kind: 'present'; credential: string; mode: number }
  | { kind: 'unusable'; mode?: number; reason: string };

export async function inspectCredentialFile(file: string | undefined): Promise<CredentialFileState> {
  if (!file) return { kind: 'unset' };
  let mode: number;
  try {
    mode = (await stat(file)).mode & 0o777;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return { kind: 'unusable', reason: (error as Error).message };
    const directory = await nearestExistingDirectory(dirname(file));
    const creatable = await access(directory, constants.W_OK | constants.X_OK).then(
      () => true,
      () => false,
    );
    return { kind: 'missing', creatable, directory };
  }
  try {
    const stored = (await readFile(file, 'utf8')).trim();
    if (!isCredential(stored)) return { kind: 'unusable', mode, reason: 'it does not hold a credential' };
    return { kind: 'present', credential: stored, mode };
  } catch (error) {
    return { kind: 'unusable', mode, reason: (error as Error).message };
  }
}

async function nearestExistingDirectory(directory: string): Promise<string> {
  for (let current = directory; ; current = dirname(current)) {
    const exists = await stat(current).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (exists || dirname(current) === current) return current;
  }
}
