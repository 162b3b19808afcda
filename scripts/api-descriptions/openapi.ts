import { heartbeatBodySchema, nodeIdSchema, registerBodySchema, shutdownBodySchema } from '../../shared/messages/index.js';
import { acceptedSchema, brokerBlockedDetails, dryRunAnswerSchema, errorBodySchema, invalidDetails, nodeViewSchema, readinessSchema, registeredSchema } from './http-answers.js';
import { componentSchemas } from './json-schemas.js';

/** Every error code each status can carry, on any route (docs/reference.md, HTTP API). */
const ERRORS = {
  BadRequest: {
    status: '400',
    codes: ['MALFORMED_JSON', 'INVALID_BODY', 'INVALID_NODE_ID', 'INVALID_STATUS', 'INVALID_QUERY', 'BAD_REQUEST'],
    details: invalidDetails,
    description: 'The request is invalid; `invalid` names every bad field and `message` each with its rule',
    headers: {},
  },
  Unauthenticated: {
    status: '401',
    codes: ['UNAUTHENTICATED', 'JOIN_TOKEN_REQUIRED', 'INVALID_JOIN_TOKEN', 'OPERATOR_TOKEN_REQUIRED'],
    details: {},
    description: 'Credentials are missing, malformed or a wrong join proof',
    headers: { 'WWW-Authenticate': { description: 'Bearer realm="agents" or Bearer realm="operator"', schema: { type: 'string' } } },
  },
  Forbidden: {
    status: '403',
    codes: ['NODE_ID_TAKEN', 'WRONG_CREDENTIAL', 'NO_CREDENTIAL_ON_RECORD', 'WRONG_OPERATOR_TOKEN', 'OPERATOR_TOKEN_NOT_SET'],
    details: {},
    description: 'The credential or token is not the right one',
    headers: {},
  },
  NotFound: {
    status: '404',
    codes: ['NODE_NOT_REGISTERED', 'NODE_NOT_FOUND', 'NOT_FOUND'],
    details: {},
    description: 'No such node (or no such route: NOT_FOUND)',
    headers: {},
  },
  BodyTooLarge: { status: '413', codes: ['BODY_TOO_LARGE'], details: {}, description: 'The body is over 16 KiB', headers: {} },
  UnsupportedEncoding: {
    status: '415',
    codes: ['UNSUPPORTED_ENCODING'],
    details: {},
    description: 'A body encoding or charset the api cannot read',
    headers: {},
  },
  RateLimited: {
    status: '429',
    codes: ['RATE_LIMITED'],
    details: {},
    description: 'The node is over RATE_LIMIT_PER_NODE_PER_MINUTE',
    headers: { 'Retry-After': { description: 'Seconds until the next request is allowed', schema: { type: 'integer', minimum: 1 } } },
  },
  Unavailable: {
    status: '503',
    codes: ['BROKER_UNAVAILABLE', 'BROKER_BLOCKED', 'STORE_UNAVAILABLE', 'TOO_MANY_STREAMS', 'SHUTTING_DOWN'],
    details: brokerBlockedDetails,
    description: 'Cannot be accepted now; try again after Retry-After seconds',
    headers: { 'Retry-After': { description: 'Seconds to wait: 5 (10 for TOO_MANY_STREAMS)', schema: { type: 'integer', minimum: 1 } } },
  },
  Internal: { status: '500', codes: ['INTERNAL'], details: {}, description: 'An unexpected error (logged)', headers: {} },
} as const;

type ErrorName = keyof typeof ERRORS;

/** A reference to a shared error answer, described for this route with the codes it can really give. */
function error(name: ErrorName, when: string, codes: string[] = [...ERRORS[name].codes]) {
  const unknown = codes.filter((code) => !(ERRORS[name].codes as readonly string[]).includes(code));
  if (unknown.length) throw new Error(`${name} has no code ${unknown.join(', ')}`);
  return { [ERRORS[name].status]: { $ref: `#/components/responses/${name}`, description: `${when} (${codes.join(', ')})` } };
}

const json = (ref: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } });

const nodeIdParameter = { $ref: '#/components/parameters/nodeId' };
const agentSecurity = [{}, { agentCredential: [] }];
const operatorSecurity = [{}, { operatorToken: [] }, { operatorTokenQuery: [] }];

function agentErrors(options: { byPath: boolean }) {
  return {
    ...error('BadRequest', 'Malformed JSON, a body that breaks the rules' + (options.byPath ? ', or a bad nodeId in the path' : ''), [
      'MALFORMED_JSON',
      ...(options.byPath ? ['INVALID_NODE_ID'] : []),
      'INVALID_BODY',
    ]),
    ...(options.byPath
      ? {
          ...error('Unauthenticated', 'AUTH_MODE=on and no node credential', ['UNAUTHENTICATED']),
          ...error('Forbidden', "A credential that is not this node's", ['WRONG_CREDENTIAL', 'NO_CREDENTIAL_ON_RECORD']),
          ...error('NotFound', 'The orchestrator does not know the node: the agent registers again', ['NODE_NOT_REGISTERED']),
        }
      : {
          ...error('Unauthenticated', 'AUTH_MODE=on and no credential, or a wrong join proof', ['UNAUTHENTICATED', 'JOIN_TOKEN_REQUIRED', 'INVALID_JOIN_TOKEN']),
          ...error('Forbidden', 'The node id is registered with another credential: an operator must reset it first', ['NODE_ID_TAKEN']),
        }),
    ...error('BodyTooLarge', 'Body over 16 KiB'),
    ...error('UnsupportedEncoding', 'Unreadable body encoding or charset'),
    ...error('RateLimited', 'Over the per-node rate limit'),
    ...error('Unavailable', 'The broker is unreachable or blocks publishes, or the store does not answer', ['BROKER_UNAVAILABLE', 'BROKER_BLOCKED', 'STORE_UNAVAILABLE']),
    ...error('Internal', 'Unexpected error'),
  };
}

function operatorErrors(forbidden: string[] = ['WRONG_OPERATOR_TOKEN']) {
  return {
    ...error('Unauthenticated', 'OPERATOR_TOKEN is set and the request carries no token', ['OPERATOR_TOKEN_REQUIRED']),
    ...error(
      'Forbidden',
      'A wrong operator token' + (forbidden.includes('OPERATOR_TOKEN_NOT_SET') ? ', or a reset with AUTH_MODE=on while OPERATOR_TOKEN is unset' : ''),
      forbidden,
    ),
  };
}

const staticFile = (operationId: string, summary: string, type: string) => ({
  get: {
    operationId,
    tags: ['dashboard'],
    summary,
    security: [],
    responses: { '200': { description: summary, content: { [type]: { schema: { type: 'string' } } } } },
  },
});

/** docs/openapi.yaml: the api's HTTP interface, with every request body from the zod schemas the api validates with. */
export function buildOpenApi(version: string): Record<string, unknown> {
  const schemas = componentSchemas(
    {
      NodeId: { schema: nodeIdSchema, description: 'A node id: 1-64 characters of A-Z a-z 0-9 . _ -' },
      RegisterBody: { schema: registerBodySchema, description: 'A registration (the original system body)' },
      HeartbeatBody: { schema: heartbeatBodySchema, description: "A heartbeat's stats (the original system body); timestamp is the agent's clock" },
      ShutdownBody: { schema: shutdownBodySchema, description: "An agent's shutdown announcement" },
      Registered: { schema: registeredSchema, description: 'The registration is durably accepted (broker confirm)' },
      Accepted: { schema: acceptedSchema, description: 'The message is durably accepted (broker confirm)' },
      DryRunAnswer: { schema: dryRunAnswerSchema, description: 'What a registration would meet: checked like one, nothing sent or stored' },
      NodeView: { schema: nodeViewSchema, description: 'A node as the orchestrator holds it; times are ISO-8601 strings or null' },
      Readiness: { schema: readinessSchema, description: 'Whether this api process can take agent messages, and why not' },
      ...Object.fromEntries(
        Object.entries(ERRORS).map(([name, spec]) => [
          `${name}Error`,
          { schema: errorBodySchema(spec.codes as unknown as [string, ...string[]], spec.details), description: `A ${spec.status} answer` },
        ]),
      ),
    },
    'draft-2020-12',
  );

  const responses = Object.fromEntries(
    Object.entries(ERRORS).map(([name, spec]) => [
      name,
      {
        description: spec.description,
        ...(Object.keys(spec.headers).length ? { headers: spec.headers } : {}),
        content: json(`${name}Error`),
      },
    ]),
  );

  return {
    openapi: '3.1.0',
    info: {
      title: 'Host heartbeat orchestrator HTTP API',
      version,
      description: [
        "The api service: the agents' HTTP endpoints (a gateway to the broker), reads, health, readiness, metrics and the live dashboard. The all-in-one serves the same on its PORT.",
        '',
        'Request bodies are JSON (`application/json` or `application/*+json`), at most 16 KiB, and an object at the top level. Every object is strict: an unknown key is refused, and so is an operator object (`{"$gt": ""}`) in place of a value.',
        '',
        'Every error answer is `{"error": "<CODE>", "message": "<what is wrong>", …details}`. A route that does not exist answers 404 `NOT_FOUND`.',
        '',
        'Generated by `npm run docs:api` from the zod schemas the api validates with: do not edit by hand. Reference: docs/reference.md (HTTP API).',
      ].join('\n'),
    },
    servers: [
      {
        url: 'http://{host}:{port}',
        description: 'The api (or the all-in-one)',
        variables: { host: { default: '127.0.0.1' }, port: { default: '8080', description: 'PORT' } },
      },
    ],
    tags: [
      { name: 'agents', description: "The original system's agent endpoints: a 2xx only once the broker confirmed the message" },
      { name: 'nodes', description: 'Reads and the operator reset; protected by OPERATOR_TOKEN when it is set' },
      { name: 'health', description: 'Liveness, readiness and Prometheus metrics; never protected' },
      { name: 'dashboard', description: 'The live node dashboard' },
    ],
    paths: {
      '/api/nodes/register': {
        post: {
          operationId: 'registerNode',
          tags: ['agents'],
          summary: 'Register a node (again)',
          description:
            'Checks run in this order: body, credentials, rate limit, the broker. Registering a node that is registered already is accepted too (201). With `?dryRun=true` (the agent preflight) it is checked the same way, then answered 200 without sending or storing anything.',
          security: agentSecurity,
          parameters: [
            {
              name: 'dryRun',
              in: 'query',
              required: false,
              description: '`true` or `1`: check only (answer 200), register nothing',
              schema: { type: 'string', enum: ['true', '1'] },
            },
          ],
          requestBody: { required: true, content: json('RegisterBody') },
          responses: {
            '200': { description: 'Dry run: a registration would be accepted', content: json('DryRunAnswer') },
            '201': { description: 'Accepted: the registration reaches the store', content: json('Registered') },
            ...agentErrors({ byPath: false }),
          },
        },
      },
      '/api/nodes/{nodeId}/stats': {
        parameters: [nodeIdParameter],
        post: {
          operationId: 'sendStats',
          tags: ['agents'],
          summary: "Send a node's heartbeat with its stats",
          description: 'Checks run in this order: path and body, credentials, rate limit, whether the node is known (cached 2 s per api process), the broker.',
          security: agentSecurity,
          requestBody: { required: true, content: json('HeartbeatBody') },
          responses: {
            '200': { description: 'Accepted: the heartbeat reaches the store', content: json('Accepted') },
            ...agentErrors({ byPath: true }),
          },
        },
      },
      '/api/nodes/{nodeId}/shutdown': {
        parameters: [nodeIdParameter],
        post: {
          operationId: 'announceShutdown',
          tags: ['agents'],
          summary: "Announce an agent's shutdown: the node goes OFFLINE with reason shutdown",
          security: agentSecurity,
          requestBody: { required: false, description: 'No body, `{}`, or a reason', content: json('ShutdownBody') },
          responses: {
            '200': { description: 'Accepted: the node goes OFFLINE', content: json('Accepted') },
            ...agentErrors({ byPath: true }),
          },
        },
      },
      '/api/nodes': {
        get: {
          operationId: 'listNodes',
          tags: ['nodes'],
          summary: 'Every node, or those of one status',
          security: operatorSecurity,
          parameters: [{ name: 'status', in: 'query', required: false, schema: { type: 'string', enum: ['ONLINE', 'OFFLINE'] } }],
          responses: {
            '200': {
              description: 'The nodes',
              content: { 'application/json': { schema: { type: 'array', items: { $ref: '#/components/schemas/NodeView' } } } },
            },
            ...error('BadRequest', 'A status other than ONLINE or OFFLINE', ['INVALID_STATUS']),
            ...operatorErrors(),
            ...error('Unavailable', 'The store does not answer', ['STORE_UNAVAILABLE']),
            ...error('Internal', 'Unexpected error'),
          },
        },
      },
      '/api/nodes/{nodeId}': {
        parameters: [nodeIdParameter],
        get: {
          operationId: 'getNode',
          tags: ['nodes'],
          summary: 'One node',
          security: operatorSecurity,
          responses: {
            '200': { description: 'The node', content: json('NodeView') },
            ...error('BadRequest', 'A bad nodeId in the path', ['INVALID_NODE_ID']),
            ...operatorErrors(),
            ...error('NotFound', 'No such node', ['NODE_NOT_FOUND']),
            ...error('Unavailable', 'The store does not answer', ['STORE_UNAVAILABLE']),
            ...error('Internal', 'Unexpected error'),
          },
        },
        delete: {
          operationId: 'resetNode',
          tags: ['nodes'],
          summary: "An operator's reset: the node's record and credential are removed and its id may register anew",
          description: 'With AUTH_MODE=on it needs OPERATOR_TOKEN to be set; with AUTH_MODE=off and no OPERATOR_TOKEN it is open.',
          security: operatorSecurity,
          responses: {
            '204': { description: 'Removed' },
            ...error('BadRequest', 'A bad nodeId in the path', ['INVALID_NODE_ID']),
            ...operatorErrors(['WRONG_OPERATOR_TOKEN', 'OPERATOR_TOKEN_NOT_SET']),
            ...error('NotFound', 'No such node', ['NODE_NOT_FOUND']),
            ...error('Unavailable', 'The store does not answer', ['STORE_UNAVAILABLE']),
            ...error('Internal', 'Unexpected error'),
          },
        },
      },
      '/healthz': {
        get: {
          operationId: 'health',
          tags: ['health'],
          summary: 'Liveness',
          security: [],
          responses: { '200': { description: 'The process runs', content: { 'text/plain': { schema: { type: 'string', const: 'ok' } } } } },
        },
      },
      '/readyz': {
        get: {
          operationId: 'readiness',
          tags: ['health'],
          summary: 'Readiness: the broker and the store (and in the all-in-one the scheduler) are reachable',
          security: [],
          responses: {
            '200': { description: 'Ready', content: json('Readiness') },
            '503': { description: 'Not ready: unavailable names what is not reachable', content: json('Readiness') },
          },
        },
      },
      '/metrics': {
        get: {
          operationId: 'metrics',
          tags: ['health'],
          summary: 'Prometheus metrics (docs/reference.md, Metrics)',
          security: [],
          responses: {
            '200': {
              description: 'Prometheus text exposition format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`)',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
          },
        },
      },
      '/': staticFile('dashboardPage', 'The live node dashboard page; it passes its own ?token= on to the stream', 'text/html'),
      '/dashboard.css': staticFile('dashboardStyles', "The dashboard's style sheet", 'text/css'),
      '/dashboard.js': staticFile('dashboardScript', "The dashboard's script", 'text/javascript'),
      '/api/stream': {
        get: {
          operationId: 'dashboardStream',
          tags: ['dashboard'],
          summary: 'Server-sent events for one page of the fleet',
          description: [
            "Frames: `snapshot` on connect (the page's nodes as node views plus `history` `[{t, cpu, mem}]`, counts, the latest events), `page` when the page's rows or counts change (at most once a second), `node` when a row's stats or status changed, `remove` when a row's node was deleted, `event` for each node.events message, and a `: keep-alive` comment every 15 s.",
            'At most 100 streams per api; a page that falls more than 1 MiB behind is dropped and reconnects.',
          ].join(' '),
          security: operatorSecurity,
          parameters: [
            { name: 'q', in: 'query', required: false, description: 'Search in node id, host name and IP address (case-insensitive)', schema: { type: 'string', maxLength: 128 } },
            { name: 'status', in: 'query', required: false, schema: { type: 'string', enum: ['ALL', 'ONLINE', 'OFFLINE'], default: 'ALL' } },
            { name: 'offset', in: 'query', required: false, schema: { type: 'integer', minimum: 0, maximum: 10_000_000, default: 0 } },
            { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 100, default: 50 } },
          ],
          responses: {
            '200': { description: 'The event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } },
            ...error('BadRequest', 'A bad q, status, offset or limit', ['INVALID_QUERY']),
            ...operatorErrors(),
            ...error('Unavailable', 'Too many streams, the api is stopping, or it has not read the fleet yet', ['TOO_MANY_STREAMS', 'SHUTTING_DOWN', 'STORE_UNAVAILABLE']),
            ...error('Internal', 'Unexpected error'),
          },
        },
      },
    },
    components: {
      schemas,
      responses,
      parameters: {
        nodeId: {
          name: 'nodeId',
          in: 'path',
          required: true,
          description: 'A bad one is refused with 400 INVALID_NODE_ID',
          schema: { $ref: '#/components/schemas/NodeId' },
        },
      },
      securitySchemes: {
        agentCredential: {
          type: 'http',
          scheme: 'bearer',
          description:
            'With AUTH_MODE=on: the node credential on stats and shutdown, `<credential>.<joinProof>` on a registration (docs/security.md). With AUTH_MODE=off none is needed.',
        },
        operatorToken: { type: 'http', scheme: 'bearer', description: 'OPERATOR_TOKEN, when the api has one set; reads are open otherwise' },
        operatorTokenQuery: { type: 'apiKey', in: 'query', name: 'token', description: 'OPERATOR_TOKEN as ?token= (what the dashboard page does)' },
      },
    },
  };
}
