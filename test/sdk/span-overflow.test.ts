import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SpanRecorder } from '@apportion/sdk';

/**
 * A SpanRecorder whose buffer overflows while a batch is being sent: the batch in flight is not part of what the
 * bound trims, so the spans dropped are the oldest never sent, and the `dropped` count names exactly those. Before,
 * the bound trimmed the head of the buffer — the batch in flight — and the send then cut as many spans from the new
 * head: spans never sent were lost while spans already sent were counted as dropped. Over a real socket, against a
 * stand-in span endpoint that holds its answers until released.
 */
describe('SpanRecorder overflow during a slow flush', () => {
  let server: Server;
  let url = '';
  const received: string[] = [];
  let release: () => void = () => undefined;
  let held = Promise.resolve();
  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const { spans } = JSON.parse(Buffer.concat(chunks).toString()) as { spans: { name: string }[] };
        received.push(...spans.map((s) => s.name));
        void held.then(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ accepted: spans.length, duplicates: 0, rejected: [] }));
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('drops the oldest spans not yet sent, counts exactly those, and sends every other span once', async () => {
    held = new Promise<void>((r) => (release = r));
    const recorder = new SpanRecorder({ url, flushIntervalMs: 0, batchSize: 100, maxBuffered: 150, timeoutMs: 60_000 });
    const record = (i: number) => recorder.recordCall({ model: 'gpt-4o-mini', name: `call-${i}`, usage: { input: 1, output: 1 } });
    for (let i = 0; i < 100; i++) record(i); // the 100th starts a flush of spans 0–99
    while (received.length < 100) await new Promise((r) => setTimeout(r, 10)); // it reached the endpoint, held there
    for (let i = 100; i < 300; i++) record(i); // 200 more while it is held: 50 over the bound
    release();
    await recorder.close();
    const want = [...Array.from({ length: 100 }, (_, i) => `call-${i}`), ...Array.from({ length: 150 }, (_, i) => `call-${150 + i}`)];
    assert.equal(recorder.dropped, 50);
    assert.deepEqual([...received].sort(), [...want].sort());
    assert.equal(new Set(received).size, received.length, 'no span sent twice');
  });
});
