// Data pipeline: datasets (`--data <spec>`), augmentations, and the prefetching DataLoader.
// Batches are plain typed arrays (NCHW float32); the trainer turns them into tensors.

export {
  type Dataset,
  type DatasetDescriptor,
  type NormStats,
  type Sample,
  MemoryDataset,
  SampleError,
  SubsetDataset,
  splitDataset,
} from './dataset.js';
export {
  DATA_SPEC_HELP,
  FASHION_MNIST_CLASSES,
  NORM_STATS,
  type DataSpec,
  type NormName,
  type OpenOptions,
  type OpenSplitOptions,
  type Split,
  adaptStats,
  datasetFromDescriptor,
  openDataset,
  openDatasets,
  parseDataSpec,
  resolveNorm,
} from './specs.js';
export { FolderDataset, clearFolderMemoryCache, fileListCachePath, IMAGE_EXTENSIONS, decodeImage, listFolder, scanFolder, type FolderOptions } from './folder.js';
export { dataCacheDir } from './cache_dir.js';
export {
  type CacheEntry,
  type FetchOptions,
  type FetchProgress,
  FetchError,
  REMOTE_DATASETS,
  REMOTE_NAMES,
  type RemoteName,
  cachedDatasetDir,
  datasetUrl,
  fetchDataset,
  isRemoteName,
  listCache,
} from './fetch.js';
export { STL10_SPLITS, type Stl10Split, openStl10Bin } from './stl10.js';
export { extractTar } from './tar.js';
export { encodeIdx, parseIdx, readIdxFile } from './idx.js';
export {
  type BlurSpec,
  type CenterCropSpec,
  type CropBox,
  type Interp,
  type JitterSpec,
  type Method,
  type RandomResizedCropSpec,
  type ViewSpec,
  applyView,
  evalTransform,
  ijepaTransform,
  rrcParams,
  vicregViews,
  viewsForMethod,
} from './transforms.js';
export { resizedCrop } from './resize.js';
export { Rng, permutation } from './rng.js';
export { type Batch, DataLoader, type LoaderOptions, defaultWorkers } from './loader.js';
