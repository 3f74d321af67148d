"""The training loop: `train()` sets up a `_Run` (model, optimizer, data, resume state), runs its iterations
and writes the weights. The order of the set-up steps is the order the RNG sees them in: do not reorder."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fcnlib.data import SegDataset
from fcnlib.errors import ConfigError
from fcnlib.eval.inference import device_name
from fcnlib.files.io import IGNORE_INDEX, atomic_save_torch, read_json
from fcnlib.models import ModelMeta, save_model
from fcnlib.progress import progress, say
from fcnlib.progress.trackers import LiveMetrics, log_records
from fcnlib.runtime.allocator import tune_malloc
from fcnlib.runtime.compute import resolve_runtime
from fcnlib.train import distributed
from fcnlib.train.build import _batch_bytes, _make_optimizer, _make_scaler, _setup_backends, build_model
from fcnlib.train.checkpoint import _Log, _RankLog, _Stop, inputs_hash, load_checkpoint
from fcnlib.train.finite import StepGuard, check_model_finite, optimizer_kwargs, state_nonfinite
from fcnlib.train.loader import apply_shm_plan, collate_shared, raw_ok, shm_plan
from fcnlib.train.loss import _accumulated_step, median_frequency_weights
from fcnlib.train.reporting import start_line, val_line
from fcnlib.train.sampling import (
    _Batches,
    _Keyed,
    _mix,
    _rank_rng,
    _rng_state,
    _seed_everything,
    _set_rng_state,
    _worker_init,
)
from fcnlib.train.settings import (
    CHECKPOINT_VERSION,
    _check_heads,
    _classes_meta,
    _dtype_name,
    _head_key,
    _settings_text,
    check_config,
)
from fcnlib.train.validate import validate

PathLike = str | os.PathLike


def train(cfg: Mapping[str, Any], out_weights: PathLike, resume_path: PathLike, log_path: PathLike,
          device: str = "auto", *, init: PathLike | Sequence[PathLike] | None = None,
          live_dir: PathLike | None = None, tensorboard_dir: PathLike | None = None) -> dict[str, Any]:
    """Train one experiment and write `out_weights` (fcnlib.models.save_model format) last.

    Progress goes to log_path (JSONL), to stderr (set-up and one line per validation: fcnlib.train.reporting)
    and, with `live_dir` and DVCLive installed, to DVCLive files there; with `tensorboard_dir`, to TensorBoard
    event files there.

    `init` (optional) overrides the weights path(s) of cfg["init"]. Resumes from `resume_path` when it
    holds a checkpoint of the same config_hash and inputs (the content of the data and init weights);
    exits with status 128+signal after checkpointing on SIGTERM/SIGINT. Returns {"experiment",
    "iterations", "final_loss", "seconds", "device", "resumed_from", "val"}.
    """
    c = check_config(cfg)
    if init is not None:
        c["init"] = dict(c["init"])
        if isinstance(init, str | os.PathLike):
            c["init"]["path"] = str(init)
        else:
            c["init"]["paths"] = [str(p) for p in init]
    run = _Run(c, Path(out_weights), Path(resume_path), Path(log_path), device, live_dir, tensorboard_dir)
    run.resume()
    run.start_loop()
    run.loop()
    return run.finish()


class _Run:
    """One training run's state; its methods are the stages of `train()`, in order."""

    def __init__(self, c: dict[str, Any], out_weights: Path, resume_path: Path, log_path: Path,
                 device: str, live_dir: PathLike | None = None, tensorboard_dir: PathLike | None = None) -> None:
        self.c, self.out_weights, self.resume_path, self.log_path = c, out_weights, resume_path, log_path
        self.live_dir, self.tensorboard_dir = live_dir, tensorboard_dir
        self.r = c["recipe"]
        self.seed = int(c["seed"])
        self.n_iter = int(c["iterations"])
        self.dist, device = distributed.setup(device)  # world 1 (no launcher env): nothing changes
        self.runtime = resolve_runtime(device, c["amp"], c["channels_last"])  # the one decision, used below
        self.dev, self.amp, self.cl = self.runtime.device, self.runtime.dtype, self.runtime.channels_last
        tune_malloc()  # glibc keeps big freed buffers: ~9M page faults per 500×500 step otherwise
        self.dataset_json = Path(c["dataset_json"])
        self.ds_meta = read_json(self.dataset_json)
        self.dataset_name = str(self.ds_meta.get("name", ""))
        self.heads = dict(self.ds_meta.get("heads") or {})
        if int(self.ds_meta.get("ignore_index", IGNORE_INDEX)) != IGNORE_INDEX:
            raise ConfigError(f"{self.dataset_json}: ignore_index {self.ds_meta['ignore_index']} is not "
                              f"{IGNORE_INDEX}, the void label training, padding and uint8 batches use; "
                              f"re-prepare the dataset with void = {IGNORE_INDEX}")
        _setup_backends(c, self.dev, self.dataset_json)  # before the model meets the GPU (CUBLAS_WORKSPACE_CONFIG)
        self._build()
        self._datasets()

    def _build(self) -> None:
        c = self.c
        _seed_everything(self.seed)
        self.model, self.pre, self.arch_meta = build_model(c, self.dataset_name)
        if self.dist.active:  # same init everywhere (DDP also broadcasts rank 0's), own dropout draws per rank
            torch.manual_seed(_mix(self.seed, self.dist.rank, 3))
        _check_heads(c, self.arch_meta, self.heads, self.dataset_json)
        self.model.to(self.dev)
        if self.cl:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.opt = _make_optimizer(self.model, self.r, **optimizer_kwargs(self.dev))
        self.scaler = _make_scaler(c, self.amp, self.dev, self.dataset_json, self.pre)

    def _datasets(self) -> None:
        c, seed = self.c, self.seed
        aug = c["augment"] or {}
        augment = ({"mirror": bool(aug.get("mirror")), "jitter": int(aug.get("jitter") or 0), "seed": seed}
                   if (aug.get("mirror") or aug.get("jitter")) else None)
        self.raw = raw_ok(c["modalities"])  # uint8 across processes, normalised on the device (fcnlib.train.loader)
        self.train_ds = SegDataset(self.dataset_json, c["train_split"], c["modalities"], self.pre, augment,
                                   raw=self.raw)
        if len(self.train_ds) == 0:
            raise ConfigError(f"{self.dataset_json}: split '{c['train_split']}' is empty; check its split list")
        self.val_ds = (SegDataset(self.dataset_json, c["val_split"], c["modalities"], self.pre, None,
                                  max_images=c["val_max_images"]) if c["val_split"] else None)
        self.weights = None
        if c["class_balance"]:
            self.weights = {h: w.to(self.dev) for h, w in median_frequency_weights(self.train_ds).items()}

    def resume(self) -> None:
        """Continue from the resume checkpoint when it is this config's and finite; else from iteration 0."""
        c, resume_path = self.c, self.resume_path
        start, train_time, log_text, self.pending_val, win = 0, 0.0, "", False, [0.0, 0]
        ck = load_checkpoint(resume_path)
        self.resumed_from = None
        init = c["init"].get("paths") or ([c["init"]["path"]] if "path" in c["init"] else [])
        self.inputs_hash = inputs_hash([self.dataset_json, *map(Path, init), *self.train_ds.files(),
                                        *(self.val_ds.files() if self.val_ds is not None else [])])
        if ck is not None:
            if ck.get("version") != CHECKPOINT_VERSION or ck.get("config_hash") != c["config_hash"] \
                    or ck.get("experiment") != c["experiment"]:
                print(f"fcn train: {resume_path}: checkpoint is for another config (hash "
                      f"{ck.get('config_hash')!r} ≠ {c['config_hash']!r}); starting from iteration 0",
                      file=sys.stderr)
            elif ck.get("inputs_hash") != self.inputs_hash:
                print(f"fcn train: {resume_path}: checkpoint was trained on other inputs (the dataset's files or "
                      f"the init weights changed since); starting from iteration 0", file=sys.stderr)
            elif state_nonfinite(ck["model"]) or state_nonfinite(ck["optimizer"]):
                print(f"fcn train: {resume_path}: checkpoint holds non-finite weights or optimizer state; "
                      f"ignoring it and starting from iteration 0", file=sys.stderr)
            elif int(ck["iteration"]) <= self.n_iter:
                self.model.load_state_dict(ck["model"])
                self.opt.load_state_dict(ck["optimizer"])
                if self.scaler is not None and ck.get("scaler"):
                    self.scaler.load_state_dict(ck["scaler"])
                _set_rng_state(_rank_rng(ck, self.dist))
                start = int(ck["iteration"])
                train_time = float(ck["train_time"])
                log_text = str(ck["log_text"])
                self.pending_val = bool(ck.get("pending_val", False))
                win = list(ck.get("loss_window", [0.0, 0]))
                self.resumed_from = start
                print(f"fcn train: resuming {c['experiment']} from iteration {start} ({resume_path})",
                      file=sys.stderr)
        self.start, self.win0, self.log_text = start, win, log_text
        self.state: dict[str, Any] = {"it": start, "train_time": train_time, "win": win, "last_loss": math.nan,
                                      "val": None}

    def start_loop(self) -> None:
        """The log, the DDP wrapper, the step guard, the data loader and the progress bar."""
        c, r, dist, dev = self.c, self.r, self.dist, self.dev
        self.log = _Log(self.log_path, self.log_text) if dist.is_main else _RankLog(self.log_text)
        setup = ""
        if dist.is_main:
            where = device_name(dev) + (f" × {dist.world} ranks" if dist.active else "")
            setup = start_line(c, where, _dtype_name(self.amp), len(self.train_ds),
                               len(self.val_ds) if self.val_ds is not None else 0)
            say(setup)
        self.live = LiveMetrics(self.live_dir if dist.is_main else None, _live_params(c), log_records(self.log_text),
                                tensorboard_dir=self.tensorboard_dir if dist.is_main else None, setup=setup)
        self.iter_size = int(r.get("iter_size", 1))
        self.ddp = dist.wrap(self.model)  # the forward goes through DDP; `model` stays the bare net (state dicts)
        self.guard = StepGuard(self.opt, self.scaler, dev, c["experiment"], _settings_text(r, c["amp"], self.amp),
                               tuple(self.win0))
        self.pres = [self.pre[m] for m in c["modalities"]]
        plan = shm_plan(int(c["num_workers"]), _batch_bytes(self.train_ds, r["batch_size"]))
        apply_shm_plan(plan)  # /dev/shm too small for the batches in flight: says so, and fits them
        workers = int(plan["num_workers"])
        self.loader = torch.utils.data.DataLoader(
            _Keyed(self.train_ds, r["batch_size"] * self.iter_size * dist.world),
            batch_sampler=_Batches(self.seed, self.start, self.n_iter, len(self.train_ds), r["batch_size"],
                                   self.iter_size, dist.world, dist.rank),
            collate_fn=collate_shared, num_workers=workers, pin_memory=dev.type == "cuda",
            worker_init_fn=_worker_init if workers > 0 else None,
            prefetch_factor=plan["prefetch_factor"] if workers > 0 else None,
            # own generator: creating the iterator must not consume the global RNG (dropout), or a
            # resumed run would diverge from a straight one
            generator=torch.Generator().manual_seed(self.seed))
        self.bar = (progress(total=self.n_iter, initial=self.start, desc=c["experiment"], unit="it")
                    if dist.is_main else None)

    def checkpoint(self, pending: bool = False) -> None:
        """Everything needed to continue exactly, atomically to resume_path (collective: every rank calls)."""
        c, state, dist = self.c, self.state, self.dist
        state["win"] = list(self.guard.poll())  # raises for a non-finite step since the last poll
        check_model_finite(self.model, f"checkpoint {self.resume_path}", state["it"], c["experiment"])
        rngs = dist.gather_objects(_rng_state())  # every rank's dropout RNG (collective: all ranks call)
        if not dist.is_main:
            return
        atomic_save_torch({
            "version": CHECKPOINT_VERSION, "experiment": c["experiment"], "config_hash": c["config_hash"],
            "inputs_hash": self.inputs_hash, "iteration": state["it"], "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None, "rng": rngs[0],
            **({"rng_ranks": rngs} if dist.active else {}),
            "data_order": {"kind": "uniform-with-replacement, keyed by (seed, iteration)", "seed": self.seed,
                           "next_iteration": state["it"] + 1},
            "log_text": self.log.text, "log_offset": len(self.log.text.encode()),
            "train_time": state["train_time"], "loss_window": list(state["win"]), "pending_val": pending},
            self.resume_path)

    def run_val(self, stop: _Stop) -> bool:
        """Validate (rank 0 scores, the others wait for its result); False when a signal stopped it."""
        if self.val_ds is None or len(self.val_ds) == 0:
            return True
        res = validate(self.model, self.val_ds, self.dev, self.amp, self.cl, stop) if self.dist.is_main else None
        res = self.dist.broadcast_object(res)
        if res is None:
            return False
        self.state["val"] = res
        self._record({"iter": self.state["it"], "time": round(self.state["train_time"], 3), "val": res})
        if self.dist.is_main:
            say(val_line(self.c["experiment"], self.state["it"], self.n_iter, res, self.state.get("log_loss"),
                         float(self.r["lr"])))
        return True

    def _record(self, rec: dict[str, Any]) -> None:
        """One JSONL record, mirrored to DVCLive."""
        self.log.write(rec)
        self.live.write(rec)

    def preempted(self, stop: _Stop, pending: bool = False) -> SystemExit:
        """Checkpoint after SIGTERM/SIGINT; the SystemExit (128+signal) to raise."""
        dist = self.dist
        stop.signum = max(stop.signum, dist.agree_max(stop.signum))
        self.checkpoint(pending)
        name = signal.Signals(stop.signum).name
        if not dist.is_main:
            return SystemExit(128 + stop.signum)
        print(f"fcn train: {name} at iteration {self.state['it']} of {self.c['experiment']}: state saved to "
              f"{self.resume_path}; rerun the same job (e.g. snakemake --rerun-incomplete, or requeue) to resume "
              f"from there", file=sys.stderr)
        return SystemExit(128 + stop.signum)

    def loop(self) -> None:
        """Iterations start+1 … n_iter (a pending validation of a preempted run first)."""
        with _Stop() as stop:
            try:
                if self.pending_val:
                    if not self.run_val(stop):
                        raise self.preempted(stop, pending=True)
                    self.checkpoint()
                batches = iter(self.loader)
                while self.state["it"] < self.n_iter:
                    agreed = self.dist.agree_max(stop.signum)  # every rank stops at the same iteration
                    if agreed:  # (a signal landing during the collective waits for the next iteration's)
                        stop.signum = agreed
                        raise self.preempted(stop)
                    self.iteration(stop, batches)
            finally:
                if self.bar is not None:
                    self.bar.close()
                self.log.close()
                self.live.close()

    def iteration(self, stop: _Stop, batches: Any) -> None:
        """One update, then its logging, validation, checkpoint and the test hook."""
        c, r, dist, state, heads = self.c, self.r, self.dist, self.state, self.heads
        t0 = time.perf_counter()
        micro = []
        try:
            for _ in range(self.iter_size):
                micro.append(next(batches))
        except Exception:
            if stop.signum:  # a worker died of the same signal
                raise self.preempted(stop) from None
            raise
        it = state["it"] + 1
        _accumulated_step(
            self.ddp, self.guard, self.scaler, micro, dist=dist, dev=self.dev, amp=self.amp, cl=self.cl,
            reduction=r["loss"],
            weights=None if self.weights is None else {h: self.weights[_head_key(h, heads)] for h in
                                                       (heads if len(heads) > 1 else ["_"])},
            keep_prob=float(c["loss_sampling"]), seed=self.seed, it=it,
            slots=_Batches.slots(r["batch_size"], self.iter_size, dist.world, dist.rank),
            where=str(self.dataset_json), pres=self.pres if self.raw else None)
        state["it"] = it
        log_now = bool(c["log_every"] and it % c["log_every"] == 0) or it == self.n_iter
        if log_now:
            state["win"] = list(self.guard.poll())  # the one host sync of a log interval
        state["train_time"] += time.perf_counter() - t0
        if self.bar is not None:
            self.bar.update(1)
        if log_now:
            mean_loss = state["win"][0] / max(state["win"][1], 1)
            self._record({"iter": it, "loss": mean_loss, "time": round(state["train_time"], 3), "lr": float(r["lr"])})
            state["log_loss"] = mean_loss
            state["win"] = [0.0, 0]
            self.guard.reset_window()
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{mean_loss:.4g}", refresh=False)  # shown with the next line
        if (c["val_every"] and it % c["val_every"] == 0) or it == self.n_iter:
            if not self.run_val(stop):
                raise self.preempted(stop, pending=True)
        if c["checkpoint_every"] and it % c["checkpoint_every"] == 0 and it < self.n_iter:
            self.checkpoint()
        hook = sys.modules[__package__]._iteration_hook  # the package's attribute: tests set it there
        if hook is not None:
            hook(it)

    def finish(self) -> dict[str, Any]:
        """Write the weights (rank 0, finite-checked), remove the resume file; the summary dict."""
        c, state, model = self.c, self.state, self.model
        meta = ModelMeta.create(
            self.arch_meta, c["modalities"], self.pre, _classes_meta(self.ds_meta),
            experiment=c["experiment"], iterations=self.n_iter, config_hash=c["config_hash"],
            dataset=self.dataset_name, data_source=str(self.ds_meta.get("source", "real")), val_split=c["val_split"],
            recipe=self.r.get("name"), init=dict(c["init"]), fixed=bool(c["fixed"]),
            seed=self.seed, val=state["val"])
        self.guard.poll()
        state["last_loss"] = self.guard.last_loss()
        check_model_finite(model, str(self.out_weights), self.n_iter, c["experiment"])
        model.to("cpu")
        model.to(memory_format=torch.contiguous_format)
        if self.dist.is_main:
            save_model(model, meta, self.out_weights)
            self.resume_path.unlink(missing_ok=True)
        self.dist.barrier()  # no rank exits (and no launcher reports success) before the weights are written
        self.dist.close()
        return {"experiment": c["experiment"], "iterations": self.n_iter, "final_loss": state["last_loss"],
                "seconds": state["train_time"], "device": str(self.dev), "resumed_from": self.resumed_from,
                "val": state["val"], "dtype": _dtype_name(self.amp),
                "grad_scale": None if self.scaler is None else float(self.scaler.get_scale())}


def _live_params(c: Mapping[str, Any]) -> dict[str, Any]:
    """The settings DVCLive records beside the metrics (params.yaml): what tells two runs apart."""
    r = c["recipe"]
    out = {k: c[k] for k in ("experiment", "iterations", "amp", "seed", "loss_sampling") if k in c}
    out.update({f"recipe.{k}": r[k] for k in ("name", "optimizer", "lr", "batch_size", "loss") if k in r})
    return out
