# blockfill runs its TypeScript sources directly (Node 24 type stripping):
# there is no build step.
FROM node:24-bookworm-slim

# HOST: listen on all interfaces inside the container (the app defaults to 127.0.0.1).
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app

# Dependencies first, so this layer is cached until the lockfile changes.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev && npm cache clean --force

COPY . .

USER node
EXPOSE 3000
CMD ["npm", "start"]
