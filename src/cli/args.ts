// Argument parsers shared by the CLI commands: a bad flag value is refused naming the flag.
import { InvalidArgumentError } from 'commander';

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
