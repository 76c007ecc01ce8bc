import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command, Help } from 'commander';
import { DOMAINS } from '../../src/cli/commands.js';
import { fullProgram } from '../../src/cli/program.js';
import { renderCliReference } from '../../src/cli/reference.js';
import { runCli } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const read = (f: string) => readFileSync(`${ROOT}${f}`, 'utf8');

/** Every command that runs something, with its full name (`budgets set`). */
function leaves(cmd: Command, parents: string[] = []): { name: string; cmd: Command }[] {
  return cmd.commands.flatMap((c) => (c.commands.length > 0 ? leaves(c, [...parents, c.name()]) : [{ name: [...parents, c.name()].join(' '), cmd: c }]));
}

describe('docs/cli.md', () => {
  it('is what npm run docs:cli writes from the CLI as it is now', async () => {
    const expected = renderCliReference(await fullProgram());
    assert.ok(read('docs/cli.md') === expected, 'docs/cli.md is out of date with the CLI: run npm run docs:cli and commit docs/cli.md');
  });

  it('names every command, argument and option of the CLI (and a change to one changes the reference)', async () => {
    const program = await fullProgram();
    const doc = renderCliReference(program);
    const all = leaves(program);
    assert.ok(all.length >= 30, `${all.length} commands`);
    for (const { name, cmd } of all) {
      const at = doc.indexOf(`### \`apportion ${name}\``);
      assert.ok(at >= 0, `no section for ${name}`);
      const section = doc.slice(at, doc.indexOf('\n### ', at + 1) >>> 0 || undefined);
      for (const o of cmd.options) assert.ok(section.includes(`| \`${o.flags}\` |`), `${name}: ${o.flags}`);
      for (const a of cmd.registeredArguments) assert.ok(section.includes(a.name()), `${name}: <${a.name()}>`);
    }
    // The options an external evaluation found undocumented.
    for (const [name, flag] of [
      ['allocate', '--strategy <id>'], ['allocate', '--unit <key>'], ['stats', '--pipeline <id>'], ['simulate', '--concurrency <n>'], ['simulate', '--quiet'], ['simulate', '--seed <n>'],
      ['simulate', '--train-every <n>'], ['simulate', '--out <file>'], ['report costs', '--from <day>'], ['report costs', '--to <day>'], ['keys create', '--expires-at <iso>'], ['budgets delete', '--micro-cents'], ['budgets balances', '--micro-cents'],
    ] as const) {
      const at = doc.indexOf(`### \`apportion ${name}\``);
      assert.ok(at >= 0 && doc.indexOf(`| \`${flag}\` |`, at) > at && doc.indexOf(`| \`${flag}\` |`, at) < (doc.indexOf('\n### ', at + 1) >>> 0), `${name} ${flag}`);
    }
    assert.doesNotMatch(doc, /\[object Object\]/, 'a default is shown as typed (`--features` defaults to {})');
    const stats = all.find((l) => l.name === 'stats')!.cmd;
    stats.option('--brand-new <x>', 'an option added after the reference was written');
    assert.notEqual(renderCliReference(program), doc);
  });

  it('is linked from the README, and docs/budgets.md lists every budgets subcommand', () => {
    assert.match(read('README.md'), /\]\(docs\/cli\.md\)/);
    const budgets = read('docs/budgets.md');
    for (const sub of ['set', 'balances', 'fund', 'debit', 'reset', 'freeze', 'unfreeze', 'delete']) assert.match(budgets, new RegExp(`apportion budgets (?:[a-z|]+\\|)?${sub}\\b`), sub);
    assert.match(budgets, /--micro-cents/);
  });
});

/**
 * `apportion …` as the README and docs/*.md write it (in a code span, or a line of a code block), except docs/cli.md,
 * which is generated: the command path (`budgets set|balances` names each) and the options written after it.
 */
function namedCommands(file: string, text: string): { where: string; path: string[][]; options: string[]; text: string }[] {
  const out: { where: string; path: string[][]; options: string[]; text: string }[] = [];
  let block = false;
  text.split('\n').forEach((line, i) => {
    if (/^\s*```/.test(line)) {
      block = !block;
      return;
    }
    const spans = block ? [line] : [...line.matchAll(/`([^`]*)`/g)].map((m) => m[1]!);
    for (const span of spans) {
      for (const m of span.matchAll(/(?:^|[\s(])(?:npx )?apportion((?: [a-z][a-z|-]*)*)([^#]*)/g)) {
        const words = m[1]!.trim().split(' ').filter((w) => w !== '');
        out.push({ where: `${file}:${i + 1}`, path: words.map((w) => w.split('|')), options: [...m[2]!.matchAll(/(?:^|[\s[])(--[a-z][a-z-]*)/g)].map((o) => o[1]!), text: m[0]!.trim() });
      }
    }
  });
  return out;
}

describe('commands named in the docs', () => {
  it('every `apportion …` the README and docs/*.md write is a command of the CLI, with options it has', async () => {
    const program = await fullProgram();
    const files = ['README.md', ...readdirSync(`${ROOT}docs`).filter((f) => f.endsWith('.md') && f !== 'cli.md').map((f) => `docs/${f}`)];
    const wrong: string[] = [];
    let checked = 0;
    for (const file of files) {
      for (const n of namedCommands(file, read(file))) {
        checked++;
        // `apportion help <command…>` is the entry point's own (buildProgram), not a command of the reference.
        if (n.path[0]?.[0] === 'help') continue;
        let cmds: Command[] = [program];
        for (const alternatives of n.path) {
          const next = alternatives.map((w) => cmds[0]!.commands.find((c) => c.name() === w));
          // A word that is no subcommand ends the path: it is an argument (`apportion stats research-estimate`).
          if (next.every((c) => c === undefined)) break;
          if (next.some((c) => c === undefined) || cmds.length > 1) {
            wrong.push(`${n.where}: ${n.text}: ${alternatives.join('|')}`);
            break;
          }
          cmds = next as Command[];
        }
        if (cmds[0] === program && n.path.length > 0) wrong.push(`${n.where}: ${n.text}: no such command`);
        for (const o of n.options) {
          for (const c of cmds) if (o !== '--help' && !c.options.some((x) => x.long === o)) wrong.push(`${n.where}: ${n.text}: ${c.name()} has no ${o}`);
        }
      }
    }
    assert.ok(checked > 40, `${checked} commands`);
    assert.deepEqual(wrong, []);
  });
});

describe('apportion help <command>', () => {
  it('apportion --help lists every command as the reference does (simulate [options] <world>, not simulate [args...])', async () => {
    const [help, program] = await Promise.all([runCli(['--help'], process.env), fullProgram()]);
    assert.equal(help.code, 0, help.stderr);
    const listed = help.stdout.replace(/\s+/g, ' ');
    for (const c of program.commands) assert.ok(listed.includes(` ${new Help().subcommandTerm(c)} `), `${new Help().subcommandTerm(c)} in: ${help.stdout}`);
    assert.doesNotMatch(help.stdout, /\[args\.\.\.\]/);
  });

  it('says what <command> --help says, for the commands loaded on use too (help budgets lists its subcommands)', async () => {
    const cases = [...DOMAINS.flatMap((d) => d.commands.map(([n]) => [n])), ['budgets', 'set'], ['experiments', 'audit'], ['allocate']];
    for (const c of cases) {
      const [viaHelp, viaFlag] = await Promise.all([runCli(['help', ...c], process.env), runCli([...c, '--help'], process.env)]);
      assert.equal(viaFlag.code, 0, `${c.join(' ')} --help: ${viaFlag.stderr}`);
      assert.equal(viaHelp.code, 0, `help ${c.join(' ')}: ${viaHelp.stderr}`);
      assert.equal(viaHelp.stdout, viaFlag.stdout, `help ${c.join(' ')}`);
      assert.doesNotMatch(viaHelp.stdout, /\[args\.\.\.\]/, `help ${c.join(' ')} shows the real command, not its placeholder`);
    }
    const unknown = await runCli(['help', 'budgets', 'nope'], process.env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown command 'nope'/);
  });
});
