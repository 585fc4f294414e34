# syntax=docker/dockerfile:1
# IoT Support Backend: `node dist/server.js` (default) and `node dist/cli.js <command>` (rotation-job, migrate, …).
# Build:  docker build -t iot-support-backend .
ARG NODE_IMAGE=node:24-bookworm-slim

# --- build: full install, type-check, bundle to dist/ (server.js, cli.js, schema-worker.js, shared chunks, migrations/) ---
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY patches ./patches
# No dependency needs an install script to build: tsc and esbuild come as prebuilt platform packages. Our own
# fix to postgres.js (patches/, bundled into dist/) is applied explicitly.
RUN npm ci --ignore-scripts --no-audit --no-fund && npx patch-package --error-on-fail
COPY tsconfig.json server.ts cli.ts ./
COPY functions ./functions
COPY lib ./lib
COPY db ./db
RUN npm run build

# --- deps: production dependencies only ---
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the only production package with an install script is @scarf/scarf (install telemetry,
# also refused by package.json "allowScripts").
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime ---
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    PORT=3201 \
    HOST=0.0.0.0 \
    DATA_DIR=/data
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && mkdir -p /data/firmware \
 && chown -R 10001:10001 /data
WORKDIR /app
# The bundle holds every other dependency; these two stay files on disk (PGlite loads its WebAssembly next to
# itself, the API docs serve Swagger UI's assets).
COPY --from=deps /app/node_modules/@electric-sql/pglite ./node_modules/@electric-sql/pglite
COPY --from=deps /app/node_modules/swagger-ui-dist ./node_modules/swagger-ui-dist
COPY --from=build /src/dist ./dist
# "type": "module": dist/*.js are ES modules.
COPY package.json ./
# Node 24's module compile cache, filled at build time, so even the first start skips compiling the bundle.
# Importing the entry points defines everything and runs nothing (they start only when run directly).
ENV NODE_COMPILE_CACHE=/app/.node-compile-cache
RUN node --input-type=module -e "await import('/app/dist/server.js'); await import('/app/dist/cli.js')"
USER 10001:10001
# Firmware (ASSETS_DIR, default $DATA_DIR/firmware) and, in embedded mode, the PGlite database and keys.
VOLUME ["/data"]
EXPOSE 3201
# No curl in the slim image: node's fetch does the liveness check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT||3201}/api/health/live`).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
CMD ["node", "dist/server.js"]
