/** systeminformation's memory module on its own (services/agent/system-stats-sources.ts); its types are the package's. */
declare module 'systeminformation/lib/memory.js' {
  export function mem(): Promise<import('systeminformation').Systeminformation.MemData>;
}
