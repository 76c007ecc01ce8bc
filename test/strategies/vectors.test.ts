import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { PipelineBody } from '../../src/pipelines/schema.js';
import { runStrategy } from '../helpers/strategies.js';

interface Case {
  name: string;
  kind: string;
  params?: Record<string, unknown>;
  agents: PipelineBody['agents'];
  features?: Record<string, string | number | boolean | null>;
  total: number;
  expected: Record<string, number>;
}

const { cases } = JSON.parse(readFileSync(new URL('../vectors/strategies.json', import.meta.url), 'utf8')) as { cases: Case[] };

describe('strategy vectors (test/vectors/strategies.json)', () => {
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(runStrategy(c.kind, c.agents, c.params ?? {}, c.features ?? {}, c.total), c.expected);
    });
  }
});
