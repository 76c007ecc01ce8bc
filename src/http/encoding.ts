import { PassThrough, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors/app-error.js';

/**
 * One Content-Encoding rule for every route (a global preParsing hook, app.ts): `gzip` is decoded (OTLP exporters
 * compress; so may any client), `identity` or none passes through, and any other coding (deflate, br, a list such as
 * `gzip, gzip`, a made-up one) is refused with 415 UNSUPPORTED_CONTENT_ENCODING before the body is read, never read as
 * if it were not encoded. The body limit applies to the inflated bytes (Fastify counts what this stream yields), so a
 * small gzip bomb is a 413 like a large plain body. GET and HEAD bodies are not read, so their header is not looked at.
 */
export async function decodeContentEncoding(req: FastifyRequest, _reply: unknown, payload: Readable): Promise<Readable> {
  if (req.method === 'GET' || req.method === 'HEAD') return payload;
  const enc = String(req.headers['content-encoding'] ?? 'identity').toLowerCase().trim();
  if (enc === 'identity' || enc === '') return payload;
  if (enc !== 'gzip') throw new AppError('UNSUPPORTED_CONTENT_ENCODING', `headers/content-encoding: "${enc}" is not supported (gzip or identity)`);
  const gunzip = createGunzip();
  const out = new PassThrough() as PassThrough & { receivedEncodedLength?: number };
  let encoded = 0;
  out.receivedEncodedLength = 0;
  payload.on('data', (c: Buffer) => {
    encoded += c.length;
    // Fastify compares Content-Length with the bytes received on the wire, not the inflated ones.
    out.receivedEncodedLength = encoded;
  });
  payload.on('error', (e) => out.destroy(e));
  gunzip.on('error', (e) => out.destroy(new AppError('INVALID_CONTENT_ENCODING', `body: not valid gzip (${e.message})`)));
  payload.pipe(gunzip).pipe(out);
  return out;
}
