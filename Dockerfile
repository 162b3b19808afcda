# syntax=docker/dockerfile:1
# One image for every service: docker-compose.yml picks the service with `command: ["npm", "run", "<name>"]`.
FROM node:20-slim

WORKDIR /app

# tsx runs the TypeScript services directly, and package.json lists it under devDependencies, so
# `npm ci --omit=dev` would leave the services unable to start. Once tsx moves to dependencies this
# becomes `npm ci --omit=dev`.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && npm cache clean --force

COPY . .

# Set after the install: with NODE_ENV=production `npm ci` would skip dev dependencies (tsx).
ENV NODE_ENV=production

# The agent keeps its credential here (a volume in compose); owned by the unprivileged user that runs it.
RUN mkdir -p /var/lib/host-agent && chown node:node /var/lib/host-agent && chmod 700 /var/lib/host-agent

# The image's unprivileged user; the agent gains access to the Docker socket through group_add in compose.
USER node

# No CMD: every service names its own npm script.
