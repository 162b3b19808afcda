import { spawn } from 'node:child_process';
import { chmod, cp, mkdir, rm } from 'node:fs/promises';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

/**
 * `npm run build` (docs/reference.md, commands):
 * - compiles services/ and shared/ to <outDir>/ (tsconfig.build.json), so every service runs with plain `node`;
 * - copies the files the compiled code reads beside itself at run time (the dashboard's static files);
 * - bundles the agent into one file, <outDir>/host-agent.mjs, that needs nothing but Node.js on a host.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEFAULT_OUT_DIR = join(ROOT, 'dist');

/** Static files the compiled services locate relative to their own module (import.meta.url), source -> same place under outDir. */
const STATIC_DIRS = ['services/api/dashboard/public'];

/** Native add-ons the agent's dependencies load optionally, inside try/catch (ssh2's, for Docker over SSH). */
const OPTIONAL_NATIVE = /^cpu-features$|\.node$/;

/**
 * Parts of dockerode the agent never calls, which would otherwise be loaded at start and cost the bundle some
 * 25 MiB of memory: Docker over SSH (the agent talks to DOCKER_SOCKET, a Unix socket) and BuildKit sessions
 * (image builds). Each becomes a module whose functions and classes throw, named, when used.
 */
const UNUSED_BY_THE_AGENT: Record<string, string> = {
  ssh2: 'Docker over SSH',
  '@grpc/grpc-js': 'BuildKit sessions',
  '@grpc/proto-loader': 'BuildKit sessions',
};

/**
 * A native add-on cannot live inside a JavaScript file. Its `require` becomes a module that throws, which the
 * dependency's own try/catch turns into its pure-JavaScript fallback: the same behaviour on every host, whatever
 * node_modules happens to be beside the bundle. Modules in UNUSED_BY_THE_AGENT load, and throw when used.
 */
const stubs: Plugin = {
  name: 'host-agent-stubs',
  setup(b) {
    b.onResolve({ filter: OPTIONAL_NATIVE }, (args) => ({ path: args.path, namespace: 'optional-native' }));
    b.onLoad({ filter: /.*/, namespace: 'optional-native' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`${args.path} is not part of the bundled agent`)});`,
      loader: 'js',
    }));
    const unused = new RegExp(
      `^(${Object.keys(UNUSED_BY_THE_AGENT)
        .map((name) => name.replace(/[/.]/g, '\\$&'))
        .join('|')})$`,
    );
    b.onResolve({ filter: unused }, (args) => ({ path: args.path, namespace: 'unused-by-the-agent' }));
    b.onLoad({ filter: /.*/, namespace: 'unused-by-the-agent' }, (args) => ({
      contents: [
        `const fail = () => { throw new Error(${JSON.stringify(`${args.path} (${UNUSED_BY_THE_AGENT[args.path]}) is not part of the bundled agent`)}); };`,
        'const member = new Proxy(function () {}, { apply: fail, construct: fail });',
        "module.exports = new Proxy({}, { get: (_, key) => (key === '__esModule' || typeof key === 'symbol' ? undefined : member) });",
      ].join('\n'),
      loader: 'js',
    }));
  },
};

/**
 * Parts of dependencies the agent never runs, replaced by the dependency's own smaller equivalent. The whole source of
 * the bundle stays in the agent's memory for as long as it runs, so what is never run should not be in it:
 * - winston's internal tracing (`@dabh/diagnostics`, which prints only with DEBUG=winston* and loads a colour
 *   library for it): its production build, which traces nothing, as under NODE_ENV=production;
 * - zod's translations of its error messages (`z.locales`; the agent never configures a language): English only,
 *   the default, which zod's schemas import directly.
 */
const leaner: Plugin = {
  name: 'host-agent-leaner-dependencies',
  setup(b) {
    b.onResolve({ filter: /^@dabh\/diagnostics$/ }, (args) =>
      b.resolve('@dabh/diagnostics/node/production.js', { resolveDir: args.resolveDir, kind: args.kind, importer: args.importer }),
    );
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[/\\]node_modules[/\\]zod[/\\]/.test(args.importer) ? { path: join(args.resolveDir, '../locales/index.js'), namespace: 'zod-english-only' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-english-only' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(join(dirname(args.path), 'en.js'))};`,
      resolveDir: dirname(args.path),
      loader: 'js',
    }));
  },
};

/**
 * shared/logger.ts builds its logger from `winston.createLogger`, `winston.format` (logform) and
 * `winston.transports.Stream`; in the bundle `winston` is those three alone. winston's index also builds a default
 * logger and a logger container at load, which the agent never uses. A member shared/logger.ts starts to use must be
 * added here: the bundled agent's test fails at start until it is.
 */
const winstonParts: Plugin = {
  name: 'host-agent-winston-parts',
  setup(b) {
    b.onResolve({ filter: /^winston$/ }, (args) => (/[/\\]node_modules[/\\]/.test(args.importer) ? undefined : { path: 'winston', namespace: 'winston-parts' }));
    b.onLoad({ filter: /.*/, namespace: 'winston-parts' }, () => ({
      contents: [
        "const { format } = require('logform');",
        "const createLogger = require('winston/lib/winston/create-logger.js');",
        "const Stream = require('winston/lib/winston/transports/stream.js');",
        'module.exports = { createLogger, format, transports: { Stream } };',
      ].join('\n'),
      // logform as winston resolves it, should two versions be installed.
      resolveDir: join(ROOT, 'node_modules/winston'),
      loader: 'js',
    }));
  },
};

/**
 * Built-in modules that dependencies load at start for what the agent does rarely or never: TLS, for `amqps://`
 * brokers only (amqplib). Each built-in module a process loads costs it memory, about 0.3 MiB for node:tls. For
 * these dependencies the module is one whose functions load the real one when first called, with the same arguments.
 */
const DEFERRED_BUILTINS: Record<string, RegExp> = {
  tls: /[/\\]node_modules[/\\]amqplib[/\\]/,
};

const deferredBuiltins: Plugin = {
  name: 'host-agent-deferred-builtins',
  setup(b) {
    b.onResolve({ filter: new RegExp(`^(node:)?(${Object.keys(DEFERRED_BUILTINS).join('|')})$`) }, (args) => {
      const name = args.path.replace(/^node:/, '');
      return DEFERRED_BUILTINS[name]!.test(args.importer) ? { path: name, namespace: 'deferred-builtin' } : undefined;
    });
    b.onLoad({ filter: /.*/, namespace: 'deferred-builtin' }, async (args) => {
      const real = (await import(`node:${args.path}`)) as Record<string, unknown>;
      const functions = Object.keys(real).filter((key) => key !== 'default' && typeof real[key] === 'function');
      return {
        contents: [
          `const load = () => require(${JSON.stringify(`node:${args.path}`)});`,
          'const later = (name) => function (...args) { return new.target ? Reflect.construct(load()[name], args, new.target) : load()[name].apply(this, args); };',
          `module.exports = Object.fromEntries(${JSON.stringify(functions)}.map((name) => [name, later(name)]));`,
        ].join('\n'),
        loader: 'js',
      };
    });
  },
};

/**
 * Built-in modules taken with `require`, never `import`: for each built-in module an ES module imports, Node builds
 * an ES module view of all its exports beside the module itself, which costs the agent memory for nothing
 * (0.3 MiB for the dozen the agent uses; docs/benchmarks.md, agent). The bundle's own banner imports only
 * node:module, for `require`.
 */
const builtinsByRequire: Plugin = {
  name: 'host-agent-builtins-by-require',
  setup(b) {
    const builtins = new Set(builtinModules);
    b.onResolve({ filter: /^[a-z_:/]+$/ }, (args) => {
      const name = args.path.replace(/^node:/, '');
      if ((args.kind !== 'import-statement' && args.kind !== 'dynamic-import') || !builtins.has(name)) return undefined;
      return { path: `node:${name}`, namespace: 'builtin-by-require' };
    });
    b.onLoad({ filter: /.*/, namespace: 'builtin-by-require' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};

/**
 * Modules the agent imports only when first needed (`import()`), each bundled as a piece of its own, a CommonJS
 * module whose code is one function: nothing of it is compiled, and none of its functions or built-in modules exist,
 * before that function runs. Bundled with the rest, the message schemas (zod) cost the agent about 0.5 MiB at start
 * though no schema was built: an ES module's top-level functions all exist once the bundle is loaded.
 */
const ON_DEMAND = [join(ROOT, 'shared/messages/index.ts')];

const onDemand: Plugin = {
  name: 'host-agent-on-demand',
  setup(b) {
    b.onResolve({ filter: /\.js$/ }, (args) => {
      const path = join(args.resolveDir, args.path).replace(/\.js$/, '.ts');
      return args.kind === 'dynamic-import' && ON_DEMAND.includes(path) ? { path, namespace: 'on-demand' } : undefined;
    });
    b.onLoad({ filter: /.*/, namespace: 'on-demand' }, async (args) => {
      const piece = await build({
        entryPoints: [args.path],
        bundle: true,
        write: false,
        platform: 'node',
        format: 'cjs',
        target: 'node20',
        minify: true,
        legalComments: 'inline', // moved to the end of the bundle with the others
        logLevel: 'warning',
        plugins: [stubs, leaner, deferredBuiltins],
      });
      return { contents: piece.outputFiles[0]!.text, resolveDir: dirname(args.path), loader: 'js' };
    });
  },
};

/**
 * V8 flags the bundle sets for itself, first thing, so they hold however it is started (`node host-agent.mjs`, the
 * systemd unit, Docker). `--max-opt=1`: no optimizing compiler (TurboFan, and Maglev where Node enables it), only the
 * interpreter and the baseline compiler. The agent runs a few milliseconds of code per heartbeat; optimizing it buys
 * nothing measurable, while each optimization touches more of the node binary and leaves compiler memory behind:
 * 5 MiB of RSS within the first minute (docs/benchmarks.md, agent). Only flags V8 reads while running belong here;
 * heap sizes are fixed when the process starts.
 */
const AGENT_V8_FLAGS = ['--max-opt=1'];

/** Bundles services/agent/main.ts into one ES module; returns its path. */
export async function bundleAgent(outfile = join(DEFAULT_OUT_DIR, 'host-agent.mjs')): Promise<string> {
  await mkdir(dirname(outfile), { recursive: true });
  const { version } = createRequire(import.meta.url)('../package.json') as { version: string };
  await build({
    entryPoints: [join(ROOT, 'services/agent/main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    legalComments: 'eof',
    logLevel: 'warning',
    plugins: [stubs, leaner, winstonParts, deferredBuiltins, builtinsByRequire, onDemand],
    // The CommonJS dependencies (amqplib, winston, dockerode, systeminformation) call require() for built-ins and read __dirname.
    banner: {
      js: [
        '#!/usr/bin/env node',
        `// host-agent ${version}: the agent of the host heartbeat orchestrator as one file (docs/agent.md). Needs Node.js >= 20.`,
        "import { createRequire as __hostAgentCreateRequire } from 'node:module';",
        'const require = __hostAgentCreateRequire(import.meta.url);',
        ...AGENT_V8_FLAGS.map((flag) => `require('node:v8').setFlagsFromString(${JSON.stringify(flag)});`),
        "const __filename = require('node:url').fileURLToPath(import.meta.url);",
        "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
      ].join('\n'),
    },
  });
  await chmod(outfile, 0o755);
  return outfile;
}

/** Compiles services/ and shared/ with tsc into outDir and copies their static files beside them. */
export async function compileServices(outDir = DEFAULT_OUT_DIR): Promise<void> {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const code = await new Promise<number | null>((done, fail) => {
    const child = spawn(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', outDir], { cwd: ROOT, stdio: 'inherit' });
    child.once('error', fail);
    child.once('exit', done);
  });
  if (code !== 0) throw new Error(`tsc -p tsconfig.build.json exited with ${code}`);
  for (const dir of STATIC_DIRS) await cp(join(ROOT, dir), join(outDir, dir), { recursive: true });
}

/** The whole build into a clean outDir (stale files of removed sources would otherwise stay runnable). */
export async function buildAll(outDir = DEFAULT_OUT_DIR): Promise<void> {
  await rm(outDir, { recursive: true, force: true });
  await compileServices(outDir);
  const bundle = await bundleAgent(join(outDir, 'host-agent.mjs'));
  process.stdout.write(`built ${relative(ROOT, outDir) || '.'}/ (services, dashboard files) and ${relative(ROOT, bundle)}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const outIndex = process.argv.indexOf('--out-dir');
  const outDir = outIndex > 0 && process.argv[outIndex + 1] ? resolve(process.argv[outIndex + 1]!) : DEFAULT_OUT_DIR;
  buildAll(outDir).catch((error: Error) => {
    process.stderr.write(`build failed: ${error.message}\n`);
    process.exit(1);
  });
}
