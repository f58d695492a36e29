/** Debian's Chromium for the browser tests, and the flags this closed network needs. */
export const CHROMIUM = '/usr/bin/chromium';
// The machine's network is closed: without these Chromium stalls on refused connections.
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
