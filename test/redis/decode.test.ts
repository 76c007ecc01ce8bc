import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Type } from '@sinclair/typebox';
import { jsonDecoder } from '../../src/redis/decode.js';
import { luaScripts, replies, SCRIPT_REPLIES } from '../../src/redis/scripts.js';

describe('jsonDecoder', () => {
  const decode = jsonDecoder(Type.Object({ at: Type.Number(), by: Type.String(), details: Type.Optional(Type.Unknown()) }));

  it('returns a stored value of the schema’s shape, typed', () => {
    assert.deepEqual(decode('{"at":1,"by":"key:ab"}'), { at: 1, by: 'key:ab' });
    assert.deepEqual(decode('{"at":2,"by":"system:guardrails","details":[1]}'), { at: 2, by: 'system:guardrails', details: [1] });
  });

  it('reads text that is not JSON, or JSON of another shape, as absent', () => {
    assert.equal(decode('not json'), undefined);
    assert.equal(decode('{"at":"1","by":"x"}'), undefined);
    assert.equal(decode('{"by":"x"}'), undefined);
    assert.equal(decode('[1,"x"]'), undefined);
    assert.equal(decode('null'), undefined);
  });
});

describe('Lua script registry', () => {
  it('names the reply shape of every script in src/redis/lua (a script without one fails at load)', () => {
    const names = [...luaScripts().keys()].sort();
    assert.deepEqual(names, Object.keys(SCRIPT_REPLIES).sort());
    assert.ok(names.includes('rolloutWrite'), 'the rollout’s compare-and-set script is one of them');
  });

  it('checks a reply against its shape and throws, naming the script, on another one', () => {
    assert.equal(replies.integer(3, 'configPut'), 3);
    assert.deepEqual(replies.pair([1, 2], 'reservationExpire'), [1, 2]);
    assert.deepEqual(replies.versionedLines([4, '10', 'line'], 'spanIngest'), { version: 4, statuses: '10', lines: ['line'] });
    assert.deepEqual(replies.ingest([1, 0, 5, ['t1']], 'learnerIngest'), [1, 0, 5, ['t1']]);
    assert.throws(() => replies.integer('3', 'configPut'), /configPut answered "3", not an integer/);
    assert.throws(() => replies.strings(['a', 1], 'budgetOp'), /budgetOp answered/);
    assert.throws(() => replies.pair([1], 'learnerDefault'), /learnerDefault answered \[1\], not two integers/);
    assert.throws(() => replies.versionedLines([1], 'spanIngest'), /spanIngest answered/);
  });
});
