/**
 * REDIS_URL, parsed without connecting (the config validates it at start; shared/redis.ts connects with it).
 *
 * Two forms: a plain `redis://` / `rediss://` URL, which ioredis takes as it is, and the Sentinel form
 * `redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]...]/<master-name>[/<db>][?sentinelPassword=...]`,
 * which becomes ioredis' `{ sentinels, name }` options: the client asks the Sentinels which server is the
 * primary of `<master-name>`, and asks again after a failover. The user and password are the Redis servers'; the
 * Sentinels' own password, if they have one, goes in the `sentinelPassword` (and `sentinelUsername`) parameter.
 * Sentinel ports default to 26379.
 */
export type RedisTarget =
  | { kind: 'server'; url: string }
  | {
      kind: 'sentinel';
      sentinels: Array<{ host: string; port: number }>;
      /** The primary's name as the Sentinels know it (`sentinel monitor <name> ...`). */
      name: string;
      username?: string;
      password?: string;
      db?: number;
      sentinelUsername?: string;
      sentinelPassword?: string;
    };

/** A REDIS_URL that cannot be used; the message never shows a password. */
export class RedisUrlError extends Error {
  readonly code = 'REDIS_URL_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'RedisUrlError';
  }
}

export const SENTINEL_PROTOCOL = 'redis+sentinel:';
const DEFAULT_SENTINEL_PORT = 26379;
const SENTINEL_QUERY = new Set(['sentinelPassword', 'sentinelUsername']);

/** Parses REDIS_URL; throws RedisUrlError naming what is wrong. */
export function parseRedisUrl(text: string): RedisTarget {
  const value = text.trim();
  if (!value.toLowerCase().startsWith(`${SENTINEL_PROTOCOL}//`)) {
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      throw new RedisUrlError('must be a URL');
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') throw new RedisUrlError(`must be a redis:, rediss: or ${SENTINEL_PROTOCOL} URL`);
    return { kind: 'server', url: value };
  }
  // Not a WHATWG URL (several host:port pairs), so taken apart here: userinfo @ hosts / name [/ db] [? query].
  const match = /^[^:]+:\/\/(?:([^@/?#]*)@)?([^/?#]*)(?:\/([^/?#]*))?(?:\/([^/?#]*))?\/?(?:\?([^#]*))?$/.exec(value);
  if (!match) throw new RedisUrlError(`must look like ${SENTINEL_PROTOCOL}//host1:26379,host2:26379/<master-name>`);
  const [, userinfo, hostList = '', name = '', dbText, query = ''] = match;
  const sentinels = hostList.split(',').map((entry) => parseHostPort(entry.trim()));
  if (!name) throw new RedisUrlError('names no primary: the path must be the master name the Sentinels monitor (…/<master-name>)');
  const target: Extract<RedisTarget, { kind: 'sentinel' }> = { kind: 'sentinel', sentinels, name: decode(name) };
  if (dbText !== undefined && dbText !== '') {
    if (!/^\d+$/.test(dbText)) throw new RedisUrlError(`database must be a number (got "${dbText}")`);
    target.db = Number(dbText);
  }
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const username = decode(colon < 0 ? userinfo : userinfo.slice(0, colon));
    const password = colon < 0 ? '' : decode(userinfo.slice(colon + 1));
    // `redis://secret@host` means the password alone, as ioredis reads the plain form; `user:pass@` both.
    if (colon < 0) {
      if (username) target.password = username;
    } else {
      if (username) target.username = username;
      if (password) target.password = password;
    }
  }
  const params = new URLSearchParams(query);
  for (const key of params.keys()) {
    if (!SENTINEL_QUERY.has(key)) throw new RedisUrlError(`unknown parameter "${key}" (only ${[...SENTINEL_QUERY].join(', ')})`);
  }
  const sentinelPassword = params.get('sentinelPassword');
  const sentinelUsername = params.get('sentinelUsername');
  if (sentinelPassword) target.sentinelPassword = sentinelPassword;
  if (sentinelUsername) target.sentinelUsername = sentinelUsername;
  return target;
}

function parseHostPort(entry: string): { host: string; port: number } {
  if (!entry) throw new RedisUrlError('needs at least one Sentinel host, and no empty entry in the comma-separated list');
  // [v6]:port, or host:port, or a host alone.
  const match = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d+))?$/.exec(entry);
  if (!match) throw new RedisUrlError(`Sentinel "${entry}" must be host or host:port`);
  const port = match[2] === undefined ? DEFAULT_SENTINEL_PORT : Number(match[2]);
  if (port < 1 || port > 65535) throw new RedisUrlError(`Sentinel "${entry}" has no valid port`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

function decode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new RedisUrlError('has a malformed %-escape');
  }
}
