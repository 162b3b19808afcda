import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
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
