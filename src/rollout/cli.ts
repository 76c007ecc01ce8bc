import { Command } from 'commander';
import { apiClient as clientOf, keyOption, urlOption, type ApiConn as Conn } from '../config/cli-api.js';
import { intArg, numberArg } from '../config/cli-options.js';
import { EntryError, readJsonFile } from '../config/cli-files.js';
import { formatResults } from './format.js';
import type { ExperimentResults } from './service.js';

const out = (s: string) => process.stdout.write(`${s}\n`);

/** An experiments file: `{ "experiments": [{ "id": "…", …PUT body }] }` (see experiments/rollouts/). */
export function readExperimentsFile(file: string): { file: string; id: string; body: Record<string, unknown> }[] {
  const doc = readJsonFile(file);
  const list = typeof doc === 'object' && doc !== null ? (doc as { experiments?: unknown }).experiments : undefined;
  if (!Array.isArray(list)) throw new Error(`${file}: expected { "experiments": [ … ] }`);
  return list.map((e: unknown, i: number) => {
    if (typeof e !== 'object' || e === null || typeof (e as { id?: unknown }).id !== 'string') throw new Error(`${file}: experiments/${i}/id is missing`);
    const { id, ...body } = e as { id: string } & Record<string, unknown>;
    return { file, id, body };
  });
}

const state = (e: { id: string; version: number; state: { status: string; phase: number; rampStep?: number }; effectiveCoverage: number }) =>
  `${e.id} v${e.version}: ${e.state.status}, phase ${e.state.phase}${e.state.rampStep !== undefined ? `, ramp step ${e.state.rampStep}` : ''}, coverage ${(e.effectiveCoverage * 100).toFixed(1)} %`;

type Exp = Parameters<typeof state>[0];

/** The most audit entries the API returns at once (`GET …/audit?limit=1..9999`). */
const AUDIT_MAX = 9999;

/** `apportion experiments apply|list|get|start|pause|resume|stop|rollback|promote|acknowledge-srm|results|audit`. */
export function registerExperiments(program: Command): void {
  const cmd = program.command('experiments').description('rollout experiments: define, start, watch, roll back, promote');
  const withConn = (c: Command) => c.addOption(urlOption()).addOption(keyOption());

  withConn(cmd.command('apply <files...>').description('create or replace the experiments of JSON files').option('--start', 'start drafts after applying'))
    .action(async (files: string[], o: Conn & { start?: boolean }) => {
      const c = clientOf(o);
      for (const { file, id, body } of files.flatMap(readExperimentsFile)) {
        // A refusal names the file and the entry (`x.json: experiments/canary: 400 VALIDATION_FAILED: …`).
        const named = (e: unknown) => {
          throw new EntryError(file, `experiments/${id}`, e);
        };
        let e = await c.request<Exp>('PUT', `/v1/experiments/${encodeURIComponent(id)}`, body).catch(named);
        if (o.start && e.state.status === 'draft') e = await c.request<Exp>('POST', `/v1/experiments/${encodeURIComponent(id)}/start`).catch(named);
        out(state(e));
      }
    });

  withConn(cmd.command('list').description('list experiments').option('--pipeline <id>', 'only this pipeline')).action(async (o: Conn & { pipeline?: string }) => {
    const q = o.pipeline ? `?pipeline=${encodeURIComponent(o.pipeline)}` : '';
    const { items } = await clientOf(o).request<{ items: Exp[] }>('GET', `/v1/experiments${q}`);
    for (const e of items) out(state(e));
  });

  withConn(cmd.command('get <id>').description('an experiment as JSON')).action(async (id: string, o: Conn) => {
    out(JSON.stringify(await clientOf(o).request('GET', `/v1/experiments/${encodeURIComponent(id)}`), null, 2));
  });

  for (const t of ['start', 'pause', 'resume', 'stop', 'rollback'] as const) {
    withConn(cmd.command(`${t} <id>`).description(t === 'rollback' ? 'kill switch: all traffic of the experiment to control' : `${t} the experiment`).option('--reason <text>', 'recorded in the audit trail'))
      .action(async (id: string, o: Conn & { reason?: string }) => {
        const e = await clientOf(o).request<Exp>('POST', `/v1/experiments/${encodeURIComponent(id)}/${t}`, o.reason ? { reason: o.reason } : undefined);
        out(state(e));
      });
  }

  withConn(
    cmd
      .command('promote <id> <variant>')
      .description("make the variant's strategy the pipeline default and end the experiment (also after a rollback)")
      .option('--force', 'promote even though a guardrail rolled the experiment back'),
  ).action(async (id: string, variant: string, o: Conn & { force?: boolean }) => {
    out(state(await clientOf(o).request<Exp>('POST', `/v1/experiments/${encodeURIComponent(id)}/promote`, { variant, ...(o.force ? { force: true } : {}) })));
  });

  withConn(
    cmd
      .command('acknowledge-srm <id>')
      .description("acknowledge the current phase's sample-ratio-mismatch flag: the ramp resumes, the SRM test restarts")
      .requiredOption('--reason <text>', 'why the mismatch is understood or harmless (kept in the audit trail)'),
  ).action(async (id: string, o: Conn & { reason: string }) => {
    out(state(await clientOf(o).request<Exp>('POST', `/v1/experiments/${encodeURIComponent(id)}/srm/acknowledge`, { reason: o.reason })));
  });

  withConn(
    cmd
      .command('results <id>')
      .description('results per variant and phase as readable tables')
      .option('--winsorize <q>', 'cap cost at this quantile, a number from 0.5 to 1, both excluded (e.g. 0.99)', numberArg(0.5, 1, { exclusive: true }))
      .option('--json', 'print the raw JSON'),
  ).action(async (id: string, o: Conn & { winsorize?: number; json?: boolean }) => {
    const q = o.winsorize !== undefined ? `?winsorize=${encodeURIComponent(String(o.winsorize))}` : '';
    const r = await clientOf(o).request<ExperimentResults>('GET', `/v1/experiments/${encodeURIComponent(id)}/results${q}`);
    out(o.json ? JSON.stringify(r, null, 2) : formatResults(r));
  });

  withConn(
    cmd
      .command('audit <id>')
      .description('the audit trail, newest first')
      .option('--limit <n>', `entries to show, newest first (1 to ${AUDIT_MAX.toLocaleString('en-US')}); a line on stderr says when there are more`, intArg(1, AUDIT_MAX), 100),
  ).action(async (id: string, o: Conn & { limit: number }) => {
    // The whole trail (the server keeps the newest 1,000 entries), to say how many the limit leaves out.
    const { items } = await clientOf(o).request<{ items: { at: number; by: string; action: string; details?: unknown }[] }>(
      'GET',
      `/v1/experiments/${encodeURIComponent(id)}/audit?limit=${AUDIT_MAX}`,
    );
    for (const a of items.slice(0, o.limit)) out(`${new Date(a.at).toISOString()}  ${a.action.padEnd(12)} ${a.by.padEnd(20)} ${a.details === undefined ? '' : JSON.stringify(a.details)}`);
    if (items.length > o.limit) {
      const total = `${items.length >= AUDIT_MAX ? 'at least ' : ''}${items.length.toLocaleString('en-US')}`;
      process.stderr.write(`showing the newest ${o.limit.toLocaleString('en-US')} of ${total} audit entries; --limit ${Math.min(items.length, AUDIT_MAX)} shows ${items.length >= AUDIT_MAX ? 'the most' : 'them all'}\n`);
    }
  });
}
