// bench/node-bridge: the comparison point for bench/run.sh — an HTTP-to-CoAP bridge written the way a
// typical Node.js user writes one: node:http in front, node-coap's request() (global agent, one UDP
// socket, CON) behind, every request forwarded, no cache. Keep it plain: it stands for "what people use".
//
// Usage: node bridge.js [HTTP_PORT] [COAP_HOST] [COAP_PORT]
//   GET /api/<path>?<query>  ->  CoAP GET coap://COAP_HOST:COAP_PORT/<path>?<query>
'use strict';

const http = require('node:http');
const coap = require('coap');

const HTTP_PORT = Number(process.argv[2] || 8081);
const COAP_HOST = process.argv[3] || '127.0.0.1';
const COAP_PORT = Number(process.argv[4] || 5683);
const PREFIX = '/api';

const STATUS = { '2.05': 200, '2.04': 204, '2.01': 201, '2.02': 204, '4.00': 400, '4.04': 404, '4.05': 405 };

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://bridge');
  if (!url.pathname.startsWith(PREFIX)) {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('no route\n');
    return;
  }
  const creq = coap.request({
    hostname: COAP_HOST,
    port: COAP_PORT,
    method: req.method,
    pathname: url.pathname.slice(PREFIX.length) || '/',
    query: url.search.slice(1),
  });
  creq.on('response', (cres) => {
    const headers = { 'Content-Type': cres.headers['Content-Format'] || 'application/octet-stream' };
    res.writeHead(STATUS[cres.code] || 502, headers);
    res.end(cres.payload);
  });
  creq.on('error', (err) => {
    res.writeHead(502, { 'Content-Type': 'text/plain' });
    res.end(`bad gateway: ${err.message}\n`);
  });
  creq.on('timeout', () => {
    res.writeHead(504, { 'Content-Type': 'text/plain' });
    res.end('gateway timeout\n');
  });
  req.pipe(creq);
});

server.listen(HTTP_PORT, '127.0.0.1', () => {
  console.log(`node-bridge: http://127.0.0.1:${HTTP_PORT}${PREFIX}/ -> coap://${COAP_HOST}:${COAP_PORT}/`);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => process.exit(0));
}
