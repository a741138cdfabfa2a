// A worker whose server-sent event streams never end on their own: one event every TICK_MS
// until the client goes away. The reference worker's replies end after at most 40 tokens, so
// it cannot hold thousands of streams open for as long as a measurement takes.
import http from 'node:http';

const tickMs = Number(process.env.TICK_MS || 1000);
const streams = new Set();

setInterval(() => {
  const event = `data: {"token":" tick","at":${Date.now()}}\n\n`;
  for (const res of streams) res.write(event);
}, tickMs).unref();

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', pid: process.pid }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  streams.add(res);
  res.on('close', () => streams.delete(res));
});
server.requestTimeout = 0;
server.listen(Number(process.env.PORT), process.env.HOST);
process.on('SIGTERM', () => process.exit(0));
