import { buildProgram } from './program.js';
import { failureMessage } from './errors.js';

// The CLI's entry point (bin/apportion.mjs runs it): the commands are defined in ./program.ts.
buildProgram()
  .parseAsync(process.argv)
  .catch((e: unknown) => {
    process.stderr.write(`${failureMessage(e, process.argv.slice(2), process.env)}\n`);
    process.exit(1);
  });
