# syntax=docker/dockerfile:1
# One image for every service, running compiled JavaScript with plain node: docker-compose.yml picks the service with
# `command: ["node", "dist/services/<name>/main.js"]` (the agent: `["node", "dist/host-agent.mjs"]`).

# Build: the TypeScript compiler and esbuild are dev dependencies; `npm run build` writes dist/ (docs/reference.md).
FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY shared ./shared
COPY services ./services
RUN npm run build

# Run: production dependencies and the compiled output only; no TypeScript sources, no tsx.
FROM node:20-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The broker topology, for anyone who loads it from the image (compose mounts its own copy into RabbitMQ).
COPY rabbitmq ./rabbitmq

# The agent keeps its credential here (a volume in compose); owned by the unprivileged user that runs it.
RUN mkdir -p /var/lib/host-agent && chown node:node /var/lib/host-agent && chmod 700 /var/lib/host-agent

# The image's unprivileged user; the agent gains access to the Docker socket through group_add in compose.
USER node

# No CMD: every service names its own entry point.
