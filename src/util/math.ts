// Small numeric helpers shared by the mask sampler and the transforms.

/** Python 3 round(): halves go to the even neighbour (the official code's block and crop sizes use it). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
