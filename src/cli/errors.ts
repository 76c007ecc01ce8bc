/**
 * The line a failed CLI command prints on stderr (exit 1). A 401 from the server when no key was given (no `--key`,
 * APPORTION_KEY unset or empty) adds how to give one: the CLI reads APPORTION_KEY, never APPORTION_ADMIN_KEY.
 */
export function failureMessage(e: unknown, argv: readonly string[], env: NodeJS.ProcessEnv): string {
  const message = e instanceof Error ? e.message : String(e);
  if (statusOf(e) !== 401 || keyGiven(argv, env)) return message;
  const admin = env.APPORTION_ADMIN_KEY ? ' (the CLI does not read APPORTION_ADMIN_KEY: export APPORTION_KEY=$APPORTION_ADMIN_KEY)' : '';
  return `${message}\nNo key was given: the server has keys configured, so pass one with --key <key> or set APPORTION_KEY${admin}.`;
}

/** The HTTP status of an API error (`ApportionHttpError.statusCode`), also when wrapped as the `cause` of another error. */
function statusOf(e: unknown): number | undefined {
  for (let cur: unknown = e, depth = 0; cur !== null && typeof cur === 'object' && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    const s = (cur as { statusCode?: unknown }).statusCode;
    if (typeof s === 'number') return s;
  }
  return undefined;
}

/** Was a non-empty key given, by `--key <key>`, `--key=<key>` or APPORTION_KEY (the key options' env)? */
export function keyGiven(argv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  if (env.APPORTION_KEY) return true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a === '--key' && (argv[i + 1] ?? '') !== '') return true;
    if (a.startsWith('--key=') && a.length > '--key='.length) return true;
  }
  return false;
}
