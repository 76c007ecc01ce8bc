import type { Argument, Command, Option } from 'commander';

/**
 * docs/cli.md, written from the CLI's own commander definitions (`npm run docs:cli`, scripts/cli-docs.ts; a test
 * fails when the file and the CLI differ): every command and subcommand with its arguments and options, each
 * option with its description, default, environment variable and choices.
 */
export function renderCliReference(program: Command): string {
  const out: string[] = [
    '# CLI reference',
    '',
    '<!-- Generated from the CLI\'s commander definitions by `npm run docs:cli` (scripts/cli-docs.ts); do not edit by',
    '     hand: test/cli/cli-docs.test.ts fails when this file and the CLI differ. -->',
    '',
    `\`${program.name()}\` (\`npx apportion\` in a checkout, \`bin/apportion.mjs\`): ${program.description()}.`,
    'Every command also takes `-h, --help` (`apportion help <command…>` prints the same, e.g. `apportion help budgets set`).',
    'A command that talks to the API takes `--url` (default',
    '`http://127.0.0.1:3000`, or `APPORTION_URL`) and `--key` (or `APPORTION_KEY`; the CLI never reads',
    '`APPORTION_ADMIN_KEY`). A numeric option outside its range, or a value of the wrong form, is refused with a',
    'message naming the option, exit status 1, before anything is sent. `serve`, `api` and `worker` take no option:',
    'they are configured by environment variables ([README, Configuration](../README.md#configuration)).',
    '',
    '## Commands',
    '',
  ];
  const leaves = walk(program, []);
  for (const { path } of leaves) out.push(`- [\`${path.join(' ')}\`](#${anchor(path)})`);
  out.push('');
  for (const { cmd, path } of leaves) out.push(...section(cmd, path));
  return `${out.join('\n').trimEnd()}\n`;
}

/** Commands that run something (no subcommands), depth first, in definition order, with their full names. */
function walk(cmd: Command, parents: readonly string[]): { cmd: Command; path: string[] }[] {
  return cmd.commands.flatMap((c) => {
    const path = [...parents, c.name()];
    return c.commands.length > 0 ? walk(c, path) : [{ cmd: c, path }];
  });
}

const anchor = (path: readonly string[]) => `apportion-${path.join('-')}`.toLowerCase().replace(/[^a-z0-9-]/g, '');
/** A default as the user would type it (`{}` for an object, not `[object Object]`). */
const shown = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
/** Text for a Markdown table cell: `<x>` outside code spans would be read as an HTML tag, `|` as a column. */
const cell = (s: string) =>
  s
    .split('`')
    .map((part, i) => (i % 2 === 1 ? part : part.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')))
    .join('`')
    .replace(/\|/g, '\\|')
    .replace(/\n/g, ' ');
const argUsage = (a: Argument) => (a.required ? `<${a.name()}${a.variadic ? '...' : ''}>` : `[${a.name()}${a.variadic ? '...' : ''}]`);

function section(cmd: Command, path: readonly string[]): string[] {
  const args = cmd.registeredArguments;
  const usage = ['apportion', ...path, ...args.map(argUsage), ...(cmd.options.length > 0 ? ['[options]'] : [])].join(' ');
  const lines = [`<a id="${anchor(path)}"></a>`, `### \`apportion ${path.join(' ')}\``, '', cell(cmd.description()), '', '```', usage, '```', ''];
  if (args.length > 0) {
    lines.push('| argument | |', '| --- | --- |');
    for (const a of args) {
      const extra = [a.argChoices ? `one of ${a.argChoices.map((c) => `\`${c}\``).join(', ')}` : '', a.defaultValue !== undefined ? `default \`${shown(a.defaultValue)}\`` : ''].filter(Boolean).join('; ');
      lines.push(`| \`${argUsage(a)}\` | ${cell([a.description, extra].filter(Boolean).join(' — '))} |`);
    }
    lines.push('');
  }
  if (cmd.options.length > 0) {
    lines.push('| option | |', '| --- | --- |');
    for (const o of cmd.options) lines.push(`| \`${o.flags}\` | ${cell(optionText(o))} |`);
    lines.push('');
  }
  return lines;
}

function optionText(o: Option): string {
  const notes: string[] = [];
  if (o.mandatory) notes.push('required');
  if (o.argChoices) notes.push(`one of ${o.argChoices.map((c) => `\`${c}\``).join(', ')}`);
  // A negated flag's `true` default and a boolean flag's `false` are how commander models "off unless given".
  if (o.defaultValue !== undefined && typeof o.defaultValue !== 'boolean') notes.push(`default \`${shown(o.defaultValue)}\``);
  if (o.envVar) notes.push(`env \`${o.envVar}\``);
  return [o.description, notes.join('; ')].filter(Boolean).join(' — ');
}
