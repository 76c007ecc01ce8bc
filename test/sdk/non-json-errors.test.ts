import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ApportionClient, ApportionHttpError } from '@apportion/sdk';

/**
 * A proxy or load balancer in front of the API answers its own error pages (nginx: `503 text/html`). The client reads
 * them as the HTTP errors they are — a 503 is retried like the API's own — instead of failing on the HTML with a
 * SyntaxError that no retry rule recognises. Over a real socket, against a stand-in for such a proxy.
 */
describe('the SDK client and error replies that are not JSON', () => {
  let server: Server;
  let url = '';
  const answers: { status: number; type: string; body: string }[] = [];
  let hits = 0;
  before(async () => {
    server = createServer((req, res) => {
      hits++;
      req.resume();
      const a = answers.shift() ?? { status: 500, type: 'text/plain', body: 'no answer scripted' };
      res.writeHead(a.status, { 'content-type': a.type });
      res.end(a.body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const html = (status: number) => ({ status, type: 'text/html', body: `<html><body><h1>${status} Service Temporarily Unavailable</h1><hr><center>nginx</center></body></html>` });

  it("a proxy's 503 HTML page is an ApportionHttpError 503, and reportOutcome retries it until the API answers", async () => {
    answers.push(html(503), html(503), { status: 202, type: 'application/json', body: JSON.stringify({ accepted: true, decisionId: 'd1' }) });
    hits = 0;
    const client = new ApportionClient({ url, pendingRetryMs: 10_000 });
    assert.deepEqual(await client.reportOutcome({ decisionId: 'd1', quality: 0.5 }), { accepted: true, decisionId: 'd1' });
    assert.equal(hits, 3);
  });

  it('any other error page keeps its status, with HTTP_ERROR and the status text; a success that is not JSON is INVALID_RESPONSE', async () => {
    const client = new ApportionClient({ url });
    answers.push(html(502));
    await assert.rejects(client.request('GET', '/v1/pipelines'), (e: unknown) => {
      assert.ok(e instanceof ApportionHttpError, String(e));
      assert.equal(e.statusCode, 502);
      assert.equal(e.code, 'HTTP_ERROR');
      return true;
    });
    answers.push({ status: 200, type: 'text/html', body: '<html>captive portal</html>' });
    await assert.rejects(client.request('GET', '/v1/pipelines'), (e: unknown) => {
      assert.ok(e instanceof ApportionHttpError, String(e));
      assert.equal(e.code, 'INVALID_RESPONSE');
      assert.match(e.message, /GET \/v1\/pipelines answered 200 with a body that is not JSON/);
      return true;
    });
  });
});
