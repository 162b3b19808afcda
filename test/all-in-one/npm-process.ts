import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The environment of a fresh machine: none of the real services' URLs. */
export function envWithoutServices(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['RABBITMQ_URL', 'MONGO_URL', 'REDIS_URL', 'ENV_FILE', 'NODE_ID', 'ORCHESTRATOR_URL', 'BROKER_NAMESPACE']) delete env[name];
  return { ...env, ...extra };
}

export interface NpmProcess {
  child: ChildProcess;
  /** Everything it wrote so far, stdout and stderr interleaved. */
  output(): string;
  /** Resolves with the first match of `pattern` in the output, or rejects after `timeoutMs` or at exit. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** Resolves with the exit code (null when killed by a signal) and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Ends the whole process group with SIGKILL if anything of it is left (cleanup after a failure). */
  kill(): void;
}

/**
 * Runs `npm <args>` from the repository root in a process group of its own, so that cleanup can end
 * npm, its shell and tsx's node together.
 */
export function runNpm(args: string[], env: NodeJS.ProcessEnv): NpmProcess {
  const child = spawn('npm', args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let text = '';
  const listeners = new Set<() => void>();
  const append = (chunk: Buffer) => {
    text += chunk.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      resolve({ code, signal });
      for (const l of listeners) l();
    });
  });
  let done = false;
  void exited.then(() => (done = true));

  return {
    child,
    output: () => text,
    exited,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const finish = (error?: Error, match?: RegExpMatchArray) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (error) reject(error);
          else resolve(match!);
        };
        const check = () => {
          const match = text.match(pattern);
          if (match) finish(undefined, match);
          else if (done || child.exitCode !== null) finish(new Error(`npm ${args.join(' ')} exited before printing ${pattern}:\n${text}`));
        };
        const timer = setTimeout(() => finish(new Error(`npm ${args.join(' ')} did not print ${pattern} within ${timeoutMs} ms:\n${text}`)), timeoutMs);
        listeners.add(check);
        check();
      });
    },
    kill() {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    },
  };
}

/** Sends SIGTERM to the whole process group (npm's shell would die of it and leave tsx behind otherwise). */
export function terminateGroup(p: NpmProcess): void {
  try {
    process.kill(-p.child.pid!, 'SIGTERM');
  } catch {
    /* already gone */
  }
}
