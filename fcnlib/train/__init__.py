"""The one trainer: every FCN experiment of Tables 1–5 (staged 32s→16s→8s, fixed, at-once, RGBD, HHA,
late fusion, two-headed SIFT Flow) from one resolved config dict.

Entry point: `train(cfg, out_weights, resume_path, log_path, device="auto") -> summary dict`.

Modules: settings (config contract), sampling (data order, RNG), build (device, model, optimizer), loss
(loss, accumulated step), validate, checkpoint (log, signals, resume file), loop (train and its stages).

Decisions worth knowing (they are what makes results exact and resumable):

* Data order — "random with replacement", as the authors' Caffe data layer: the image indices of
  iteration `it` are drawn from a torch.Generator seeded by (seed, it) alone. The order is therefore a
  pure function of the iteration number, so DataLoader workers prefetching ahead, a crash or a resume
  can never shift it. Augmentation draws (mirror/jitter) are keyed the same way (SegDataset.set_epoch
  is given a number unique to the (iteration, slot) pair).
* Batches > 1 with images of different sizes: `fcnlib.data.collate_pad` pads bottom/right to the
  largest H×W of the batch with 0 input (the mean after preprocessing) and label 255, so padding never
  contributes to the loss (recipe "paper": batch 20).
* Loss: per-pixel softmax cross-entropy, 255 ignored, "sum" (released recipe: unnormalised, batch 1)
  or "mean" over the kept pixels (paper/demo). Two heads (SIFT Flow): the two losses are summed.
  Optional loss sampling (keep each valid pixel with probability p, seeded per (iteration, image
  slot)) and median-frequency class balancing (weights computed once from the train labels).
* One update = ranks × recipe.iter_size × batch_size images (gradient accumulation, data-parallel
  ranks from fcnlib.train.distributed), equal to one batch of all of them: `_accumulated_step`.
* Device: CUDA when present (bf16 autocast from compute capability 8.0, fp16 with a GradScaler fitted
  to the loss below — fcnlib.runtime.precision — and channels_last under "auto"; cudnn.benchmark only when all
  training images share one size; `deterministic: true` for bitwise-repeatable CUDA runs —
  fcnlib.runtime.determinism); on CPU "auto" means fp32 (bf16 on native-bf16 CPUs), so a resumed run is bitwise
  identical to a straight one.
* Finite numbers (fcnlib.train.finite): settings checked at config time; loss and gradients before every
  optimizer step, on the device on CUDA (no per-step host sync; the loss is fetched at the log interval);
  weights before every checkpoint and weights.pt.
* Checkpoints: every `checkpoint_every` iterations and on SIGTERM/SIGINT, everything needed to
  continue exactly (model, optimizer, scaler, iteration, torch/CUDA/numpy/python RNG states, the data
  order state, the log text, training time) goes atomically to `resume_path` — an undeclared path,
  because Snakemake deletes a failed job's declared outputs. On a signal the trainer saves, prints how
  to resume and exits with status 128+signal (143 for SIGTERM), so Snakemake/SLURM mark the job failed
  and a rerun (`snakemake ... --rerun-incomplete`, or a requeue) continues from the checkpoint. A
  checkpoint whose config_hash differs from the config is ignored (training starts afresh). The log
  is rewritten from the checkpoint's copy on resume, so it never holds duplicate lines. The final
  weights are written last (atomically) and the resume file is removed after them.
* Optional keys beyond the paper's recipe (defaults = the paper): recipe.score_lr_mult (lr factor of
  the score layers), recipe.dropout (overrides fc6/fc7 dropout 0.5) — for the tiny random-init demo
  nets only; init kind "none" (random init, tests/ablations); recipe.learn_upsampling (default true:
  the 2× upsamplers learn, as in the CVPR experiments; false: every upscore* frozen at bilinear and
  re-set after staged init, as the authors' released solvers — see freeze_upsampling).
* Threads: the trainer leaves torch's thread count to the caller (workflow `threads:`); on a shared
  CPU, oversubscribed intra-op threads are ~10× slower than one.
"""

from __future__ import annotations

#: Test hook: called as `_iteration_hook(it)` after each completed iteration (None in normal use). Read from
#: this package at every iteration (loop.py), so `fcnlib.train._iteration_hook = f` takes effect.
_iteration_hook = None

# The public API, and the private names tests and bench/ use (`X as X`: an explicit re-export). loss.py
# looks segmentation_loss up here, so a monkeypatch of fcnlib.train.segmentation_loss applies.
from fcnlib.files.io import IGNORE_INDEX as IGNORE_INDEX  # noqa: E402
from fcnlib.train.build import _param_groups as _param_groups  # noqa: E402 - after the hook
from fcnlib.train.build import build_model, freeze_upsampling  # noqa: E402
from fcnlib.train.checkpoint import load_checkpoint  # noqa: E402
from fcnlib.train.loop import train  # noqa: E402
from fcnlib.train.loss import median_frequency_weights, segmentation_loss  # noqa: E402
from fcnlib.train.sampling import _Batches as _Batches  # noqa: E402
from fcnlib.train.sampling import _Keyed as _Keyed  # noqa: E402
from fcnlib.train.sampling import _worker_init as _worker_init  # noqa: E402
from fcnlib.train.sampling import batch_indices  # noqa: E402
from fcnlib.train.settings import CHECKPOINT_VERSION as CHECKPOINT_VERSION  # noqa: E402
from fcnlib.train.settings import MODALITY_CHANNELS as MODALITY_CHANNELS  # noqa: E402
from fcnlib.train.settings import check_config  # noqa: E402
from fcnlib.train.validate import validate  # noqa: E402

__all__ = ["train", "check_config", "freeze_upsampling", "segmentation_loss", "median_frequency_weights", "validate",
           "batch_indices", "build_model", "load_checkpoint"]
