# blockfill runs its TypeScript sources directly (Node 24 type stripping):
# there is no build step.
FROM node:24-bookworm-slim

# HOST: listen on all interfaces inside the container (the app defaults to 127.0.0.1).
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app

# Dependencies first, so this layer is cached until the lockfile changes.
# npm install, not npm ci: the lockfile is made on a registry mirror that lacks
# msgpackr's optional native packages for other platforms, which npm ci rejects.
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund && npm cache clean --force

COPY . .

USER node
EXPOSE 3000
# node itself, not npm: SIGTERM from `docker stop` must reach the service so it drains.
CMD ["node", "system/main.ts"]
