// After `cjepa pretrain`: a quick k-NN on the run's own held-out split, so that a run ends with an
// accuracy figure (and the command for the full evaluation). Skipped for unlabelled data or no split.
import { evaluateCheckpoint } from '../eval/index.js';
import type { PretrainConfig } from '../config.js';

/** k-NN@20 of the evaluated encoder on the held-out split, with a bank of at most `bank` train images. */
export async function finalKnn(cfg: PretrainConfig, bank = 10000): Promise<void> {
  if (!(cfg.valSplit > 0)) {
    console.error(`evaluate: cjepa eval --checkpoint ${cfg.out} --data ${cfg.data} --val-split 0.1`);
    return;
  }
  try {
    const r = await evaluateCheckpoint({
      checkpoint: cfg.out, data: cfg.data, valSplit: cfg.valSplit, seed: cfg.seed, protocols: ['knn'], trainSubset: bank,
      knn: { ks: [20] }, monitorSamples: 4096,
    });
    const acc = r.knn_top1?.['20'];
    console.error(`k-NN@20 on the held-out split (${r.n_test} images, bank of ${r.n_train} train images): ${acc === undefined ? '?' : (100 * acc).toFixed(1)}%; ` +
      `${r.verdict}: centred RankMe ${r.rankme_centred.toFixed(1)} of ${r.embedding_dim}`);
  } catch (e) {
    // an unlabelled dataset has no accuracy to report: say so, never fail the finished run
    console.error(`(no k-NN figure: ${(e as Error).message.split('\n')[0]})`);
  }
  console.error(`full evaluation (k-NN, linear probe): cjepa eval --checkpoint ${cfg.out} --data ${cfg.data} --val-split ${cfg.valSplit}`);
}
