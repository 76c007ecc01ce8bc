# Apportion: one image for the API and the workers (choose with the command: serve | api | worker).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# The SDK workspace (@apportion/sdk): installing builds it (its prepare script); the server imports it from there.
COPY packages/sdk ./packages/sdk
# A test-only workspace (the OpenTelemetry 3.x compatibility test): only its manifest, so the lock file's workspaces
# are all present; its packages are dev dependencies, pruned below.
COPY test/compat/otel3/package.json ./test/compat/otel3/package.json
# scripts/build-dist.mjs: the root prepare script (src/ is not here yet, so it builds nothing until `npm run build`).
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/packages/sdk/package.json ./packages/sdk/package.json
COPY --from=build /app/packages/sdk/dist ./packages/sdk/dist
COPY package.json ./
COPY experiments ./experiments
RUN mkdir -p models && chown node:node models
USER node
EXPOSE 3000 4317 9464
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["serve"]
