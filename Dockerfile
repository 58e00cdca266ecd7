# keptn-distributor container image.
#   docker build -t keptn-distributor .
# Build stage: all dependencies, TypeScript compiled to dist/.
FROM node:24-alpine AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: `prepare` would build before the sources are copied; the build runs below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib ./lib
RUN npm run build

# Final stage: production dependencies, the compiled code and the executable; no compiler, no npm.
FROM node:24-alpine
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npm cache clean --force \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /opt/yarn* /usr/local/bin/yarn /usr/local/bin/yarnpkg
COPY --from=build /app/dist ./dist
COPY bin ./bin
# The image's `node` user (uid/gid 1000), numeric so that runAsNonRoot can verify it.
# The application files stay owned by root: the agent writes only to STATE_DIR.
USER 1000:1000
# 8081: relay and Keptn API proxy (API_PROXY_PORT); 10999: /health, /ready, /metrics (HEALTH_ENDPOINT_PORT).
EXPOSE 8081 10999
# Exec form: node is PID 1 and gets SIGTERM itself; it stops polling, finishes
# in-flight work within SHUTDOWN_TIMEOUT (20s) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "bin/keptn-distributor.js"]
