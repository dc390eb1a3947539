// The tensor engine: typed Tensor API over libtorch.
export * from './tensor.js';
export * from './dtype.js';
export * from './scope.js';
export * from './runtime.js';
export * as F from './functional.js';
