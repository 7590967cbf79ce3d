# syntax=docker/dockerfile:1
# One image for both functions: FUNCTION_TARGET=ingest or FUNCTION_TARGET=persist
# (the Functions Framework convention) picks the function at start. The command
# is the one the local pipeline runs (START_COMMAND in functions/host/main.ts).

ARG NODE_IMAGE=node:20.20.2-bookworm-slim

# 1. Compile TypeScript with every dependency available.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY functions ./functions
# `npm run build` also copies the Redis scripts (*.lua) beside the compiled code.
RUN npm run build

# 2. Production dependencies only.
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# 3. The runtime: no compiler, no dev dependencies, no npm cache, not root.
FROM ${NODE_IMAGE} AS runtime
# Locally the functions bind 127.0.0.1; in a container they must take connections
# from outside it (Knative's queue-proxy, kubelet's probes).
ENV NODE_ENV=production HOST=0.0.0.0
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /app/dist ./dist
COPY --chown=root:root package.json ./
# The image's "node" user; numeric so that runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
CMD ["node", "dist/functions/host/main.js"]
