import { InvalidArgumentError, type Command } from 'commander';
import { apiClient as client, printJson as out, withConnection, type ApiConn as Conn } from '../config/cli-api.js';
import { intArg } from '../config/cli-options.js';
import { readJsonFile } from '../config/cli-files.js';

/**
 * `apportion features get|set` and `apportion models list|train|rollback|ope`: the learner's operations over the API
 * (GET/PUT /v1/pipelines/:id/features, GET /v1/models/:pipeline, POST …/train, POST …/rollback, GET
 * /v1/pipelines/:id/ope). Imports no TensorFlow.js: these only talk to a running server.
 */

const conn = (c: Command) => withConnection(c, 'bearer key (admin to change, analyst to read)');
const seg = (s: string) => encodeURIComponent(s);

/** A share of the total, at least 0 and below 1, as `--tolerance` takes it. */
function shareArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError('Must be a number at least 0 and below 1 (a share of the total).');
  return n;
}

/**
 * The declaration a file holds: `{ "features": [ … ] }` as PUT takes it, or the bare list. Anything else is refused
 * here with the file's name, before a request is made.
 */
export function featuresFromFile(file: string): { features: unknown[] } {
  const doc = readJsonFile(file);
  if (Array.isArray(doc)) return { features: doc };
  if (typeof doc === 'object' && doc !== null && Array.isArray((doc as { features?: unknown }).features)) {
    const extra = Object.keys(doc).filter((k) => k !== 'features');
    if (extra.length > 0) throw new Error(`${file}: unexpected field "${extra[0]}" beside "features", nothing applied (expected { "features": [ … ] })`);
    return { features: (doc as { features: unknown[] }).features };
  }
  throw new Error(`${file}: no "features" list, nothing applied (expected { "features": [{ "name", "type", … }] } or the list itself)`);
}

export function registerLearnerOps(program: Command): void {
  const features = program.command('features').description("a pipeline's feature declaration (what the learned strategy reads from a request)");
  conn(features.command('get <pipeline>').description("print the pipeline's feature declaration and its version")).action(async (pipeline: string, o: Conn) =>
    out(await client(o).request('GET', `/v1/pipelines/${seg(pipeline)}/features`)),
  );
  conn(
    features
      .command('set <pipeline> <file>')
      .description('declare the features from a JSON file ({ "features": [{ "name", "type", … }] } or the list itself); replaces the declaration'),
  ).action(async (pipeline: string, file: string, o: Conn) => out(await client(o).request('PUT', `/v1/pipelines/${seg(pipeline)}/features`, featuresFromFile(file))));

  const models = program.command('models').description("a pipeline's learned model versions: list, retrain, roll back, evaluate");
  conn(
    models
      .command('list <pipeline>')
      .description('the model versions, which one serves, the activation gate and the runtime guard')
      .option('--weights', "include each version's serialized weights"),
  ).action(async (pipeline: string, o: Conn & { weights?: boolean }) => out(await client(o).request('GET', `/v1/models/${seg(pipeline)}${o.weights ? '?weights=true' : ''}`)));
  conn(models.command('train <pipeline>').description('queue a retrain now (at most one waits per pipeline)')).action(async (pipeline: string, o: Conn) =>
    out(await client(o).request('POST', `/v1/models/${seg(pipeline)}/train`)),
  );
  conn(
    models
      .command('rollback <pipeline>')
      .description('serve a saved version (every process switches within about a second); it must fit the pipeline as it is')
      .requiredOption('--version <n>', 'the model version to serve (1 to 1,000,000,000)', intArg(1, 1_000_000_000)),
  ).action(async (pipeline: string, o: Conn & { version: number }) => out(await client(o).request('POST', `/v1/models/${seg(pipeline)}/rollback`, { version: o.version })));
  conn(
    models
      .command('ope <pipeline>')
      .description("estimate a strategy's value from the pipeline's logged decisions (IPS, SNIPS, DR; bootstrap 95 % CIs)")
      .requiredOption('--strategy <id>', 'the strategy to evaluate')
      .option('--limit <n>', 'newest logged decisions to use (1 to 100,000; default 20,000)', intArg(1, 100_000))
      .option('--tolerance <share>', 'two splits that differ by at most this share of the total count as one action (0 to below 1, six decimals; default 0.005)', shareArg)
      .option('--resamples <n>', 'bootstrap resamples (1 to 5,000; default 500)', intArg(1, 5000)),
  ).action(async (pipeline: string, o: Conn & { strategy: string; limit?: number; tolerance?: number; resamples?: number }) => {
    const q = new URLSearchParams({ strategy: o.strategy });
    if (o.limit !== undefined) q.set('limit', String(o.limit));
    if (o.tolerance !== undefined) q.set('tolerance', o.tolerance.toFixed(6));
    if (o.resamples !== undefined) q.set('resamples', String(o.resamples));
    out(await client(o).request('GET', `/v1/pipelines/${seg(pipeline)}/ope?${q.toString()}`));
  });
}
