// Argument parsers shared by the CLI commands: a bad flag value is refused naming the flag.
import { InvalidArgumentError, type Command } from 'commander';

export const intArg = (name: string, min = Number.MIN_SAFE_INTEGER) => (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    throw new InvalidArgumentError(`${name} must be an integer${min > Number.MIN_SAFE_INTEGER ? ` >= ${min}` : ''}, got '${v}'`);
  }
  return n;
};

export const floatArg = (name: string) => (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${v}'`);
  return n;
};

export const positiveFloatArg = (name: string) => (v: string): number => {
  const n = floatArg(name)(v);
  if (!(n > 0)) throw new InvalidArgumentError(`${name} must be > 0, got '${v}'`);
  return n;
};

/**
 * Usage errors print commander's one line and a hint (`see cjepa pretrain --help`) instead of the
 * whole help, for the program and every subcommand.
 */
export function usageHints(program: Command, path = program.name()): Command {
  program.showHelpAfterError(`see ${path} --help`);
  for (const c of program.commands) usageHints(c, `${path} ${c.name()}`);
  return program;
}
