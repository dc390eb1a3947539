// Worker-thread entry: re-opens the dataset from its descriptor and builds the batches it is asked for.

import { parentPort, workerData } from 'node:worker_threads';
import { BatchBuilder, type BatchRequest, type BuilderConfig } from './builder.js';
import type { DatasetDescriptor } from './dataset.js';
import { datasetFromDescriptor } from './specs.js';

export interface WorkerInit {
  descriptor: DatasetDescriptor;
  config: BuilderConfig;
}

export type WorkerReply =
  | ({ type: 'batch' } & import('./builder.js').BatchResult)
  | { type: 'error'; id: number; message: string };

if (parentPort) {
  const port = parentPort;
  const init = workerData as WorkerInit;
  const builder = new BatchBuilder(datasetFromDescriptor(init.descriptor), init.config);
  port.on('message', (req: BatchRequest) => {
    builder.build(req).then(
      (r) => {
        const reply: WorkerReply = { type: 'batch', ...r };
        port.postMessage(reply, [...r.views.map((v) => v.buffer as ArrayBuffer), r.labels.buffer as ArrayBuffer, r.indices.buffer as ArrayBuffer]);
      },
      (e: unknown) => {
        const reply: WorkerReply = { type: 'error', id: req.id, message: e instanceof Error ? e.message : String(e) };
        port.postMessage(reply);
      },
    );
  });
}
