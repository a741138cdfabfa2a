# syntax=docker/dockerfile:1
# The warmpool controller image. Build from the repository root:
#   docker build -t warmpool/controller:0.1.0 .
# The base is pinned by tag to the Node LTS line the project supports; pin a digest on top with
#   --build-arg NODE_IMAGE=node:24-slim@sha256:... for byte-for-byte rebuilds.
ARG NODE_IMAGE=node:24-slim

# Build stage: dev dependencies (TypeScript) and sources, never shipped.
FROM ${NODE_IMAGE} AS build
WORKDIR /app
# The lockfile alone decides the dependency layer, so a source change does not reinstall it.
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.base.json ./
COPY controller ./controller
COPY worker-image ./worker-image
RUN npm run build

# Runtime stage: production dependencies and the compiled controller only.
FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
# The npm cache lives in a cache mount, so the image carries no cache to clean.
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund
COPY --from=build /app/controller/dist ./controller/dist
# uid 1000 of the base image; the manifests set runAsUser 1000 so runAsNonRoot can be verified.
USER node
# 8080: clients (the Service); 9090: admin (metrics and probes, never on the Service).
EXPOSE 8080 9090
CMD ["node", "controller/dist/main.js"]
