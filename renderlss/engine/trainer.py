"""The training loop, one code path for one process (CPU or GPU, no process group) and for
many under torchrun (DDP with gloo on CPU, nccl on CUDA).

A step: micro-batches (gradient accumulation) -> model -> rendered losses -> backward ->
clip -> NaN guard -> AdamW step -> schedule -> EMA teacher; then logging (console, JSONL,
TensorBoard), checkpoints (atomic, keep-last-N), and on the validation split every
``eval_interval`` steps the evaluation metrics and every ``image_interval`` steps the
picture panels of its first sample.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from renderlss.configuration import to_dict
from renderlss.data.collate import to_device
from renderlss.data.dataset import OccDataset
from renderlss.data.training_set import make_training_loader
from renderlss.engine.build import build_model
from renderlss.engine.evaluation import eval_dataset, evaluate, lidar_source, predicted_volumes
from renderlss.engine.experiment import ExperimentConfig, training_data
from renderlss.engine.pictures import sample_pictures
from renderlss.engine.teacher_student import (
    MONITOR_PREFIX,
    labeled_samples,
    monitor_ratios,
    pseudo_weight_factor,
    student_view,
    teacher_student_terms,
)
from renderlss.eval.metrics import miou_key
from renderlss.io import atomic_save_json, remove_stale_temp_files
from renderlss.models.losses import class_weights_from_counts
from renderlss.models.objective import loss_terms
from renderlss.models.occupancy_net import OccupancyNet
from renderlss.train.checkpoint import (
    checkpoint_path,
    gather_rng_states,
    latest_checkpoint,
    prune_checkpoints,
    require_finite_weights_on_all_ranks,
    restore_training_state,
    save_checkpoint,
)
from renderlss.train.distributed import (
    DistInfo,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
    report_unanswered_ranks,
    seed_everything,
    wrap_model,
)
from renderlss.train.ema import EmaMomentum, ModelEMA
from renderlss.train.memory import peak_memory_mb, resident_memory_mb
from renderlss.train.metrics_log import append_record, cut_log_after
from renderlss.train.nan_guard import NanGuard
from renderlss.train.tb_logger import TensorBoardLogger


def console(line: str) -> None:
    """Print a log line at once, also when stdout is a file or a pipe (tail -f works)."""
    print(line, flush=True)


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_ratio: float) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then cosine to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def load_class_weights(config: ExperimentConfig, field: str) -> torch.Tensor | None:
    """Class weights from the class-count file named by ``model.loss.<field>`` (None if
    unset): ``class_counts`` for rendered semantics, ``occ3d_class_counts`` for the 3D loss."""
    loss = config.model.loss
    name = getattr(loss, field)
    if not name:
        return None
    path = Path(name)
    if not path.is_file():
        source = "occ" if field == "occ3d_class_counts" else "rays"
        raise FileNotFoundError(
            f"model.loss.{field}: {path} not found; make it with `python "
            f"tools/class_frequencies.py CONFIG --source {source} --out {path}`, or set "
            f"model.loss.{field}='' to weigh every class 1"
        )
    record = json.loads(path.read_text())
    names = record.get("class_names")
    expected = config.data.classes.occ_class_names + ["free"]
    if names != expected:
        raise ValueError(f"{path}: class_names {names} do not match the config's {expected}")
    return class_weights_from_counts(
        record["counts"],
        loss.class_weighting,
        loss.class_weight_alpha,
        loss.class_weight_max,
        loss.inv_log_offset,
    )


def format_duration(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class TrainResult:
    """What a run leaves behind: the bare model, this process's step records, last step."""

    model: OccupancyNet
    history: list[dict[str, float]]
    step: int


class Trainer:
    """Owns the objects of a run. ``Trainer(config).fit()`` trains; see :func:`train`."""

    def __init__(
        self,
        config: ExperimentConfig,
        resume: str | None = None,
        log: Callable[[str], None] = console,
        dist: DistInfo | None = None,
    ) -> None:
        self.config = config
        tc = config.train
        self.dist = dist or init_distributed(device=tc.device, timeout_s=tc.dist_timeout_s)
        self.is_main = self.dist.rank == 0
        self.log = log if self.is_main else (lambda line: None)
        self.work_dir = Path(tc.work_dir)
        seed_everything(tc.seed, self.dist.rank)
        # Labeled keyframes, and unlabeled frames mixed into every batch with data.unlabeled.
        self.training = make_training_loader(training_data(config), tc.seed, self.dist)
        self.model = build_model(config).to(self.dist.device)
        self.model.train()
        self.ddp = wrap_model(self.model, self.dist)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, tc.warmup_steps, tc.max_steps, tc.min_lr_ratio),
        )
        self.use_amp = tc.amp and self.dist.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        teacher = tc.teacher
        if teacher.enabled:
            # The teacher of the teacher-student loop is the run's EMA: saved, restored and
            # selectable for evaluation (--weights ema) as the evaluation EMA is.
            self.ema = ModelEMA(
                self.model,
                EmaMomentum(teacher.momentum_warm_steps, teacher.max_momentum),
                teacher.buffers,
            )
        else:
            self.ema = (
                ModelEMA(self.model, EmaMomentum(tc.ema_warm, tc.ema_max_momentum))
                if tc.ema
                else None
            )
        self.guard = NanGuard(tc.max_consecutive_nan, self.log)
        self.class_weights = {
            term: None if w is None else w.to(self.dist.device)
            for term, w in (
                ("semantic", load_class_weights(config, "class_counts")),
                ("occ3d", load_class_weights(config, "occ3d_class_counts")),
            )
        }
        self.step = 0
        if resume:
            self._resume(resume)
        self.tb = TensorBoardLogger(self.work_dir / "tb", enabled=self.is_main)
        self.val_set = self._validation_set()

    def _validation_set(self) -> OccDataset | None:
        """The eval-mode dataset of ``data.val_infos`` when evaluation or pictures are on."""
        tc, data = self.config.train, self.config.data
        if not (tc.eval_interval or tc.image_interval):
            return None
        if not data.val_infos:
            self.log("train.eval_interval/image_interval set but data.val_infos is empty: off")
            return None
        return eval_dataset(self.config, data.val_infos)

    def _validate(self, evaluate_metrics: bool) -> None:
        """Pictures of the first validation sample (main process) and, when asked, the
        metrics of the whole validation split (all processes share the work)."""
        config = self.config
        if evaluate_metrics:
            result = evaluate(
                self.model, self.val_set, config, config.eval, device=self.dist.device
            )
            scalars = {k: v for k, v in result.metrics.items() if not k.startswith("baseline/")}
            self.tb.scalars("val", scalars, self.step)
            headline = miou_key(len(config.data.classes.occ_class_names))
            summary = " ".join(
                f"{k}={scalars[k]:.4f}"
                for k in (headline, "RayIoU", "depth/lidar/abs_rel")
                if k in scalars
            )
            self.log(f"[{self.step}] val {summary}")
        if self.is_main:
            bins = config.model.depth.bins
            lidar = lidar_source(config, self.val_set.dataroot)
            device = self.dist.device
            for batch, predictions in predicted_volumes(
                self.model, self.val_set, config.eval, device, indices=[0]
            ):
                pictures = sample_pictures(
                    self.model,
                    config,
                    config.eval,
                    self.val_set,
                    batch,
                    predictions,
                    0,
                    lidar,
                    (bins.d_min, bins.d_max),
                    2,
                )
                for name, picture in pictures.items():
                    self.tb.image(f"val/{name}", picture, self.step)
        self.model.train()
        barrier()

    def _resume(self, resume: str) -> None:
        path = latest_checkpoint(self.work_dir) if resume == "auto" else Path(resume)
        if path is None:
            self.log(f"no checkpoint in {self.work_dir}: starting a new run")
            return
        state = restore_training_state(
            path,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler if self.use_amp else None,
            ema=self.ema,
            map_location=self.dist.device,
            log=self.log,
        )
        self.guard.load_state_dict(state.extra.get("nan_guard", {}))
        self.step = state.step
        self.log(f"resumed from {path} at step {self.step}")
        if self.is_main:
            cut_log_after(self.work_dir / "metrics.jsonl", self.step)

    def _losses(self, batch: dict) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Loss terms of a micro-batch and, with the teacher, its monitoring (sum, count)
        pairs (see :mod:`renderlss.engine.teacher_student`)."""
        cfg = self.config
        teacher = cfg.train.teacher
        student_batch = batch
        if teacher.enabled:
            labeled = labeled_samples(batch)
            student_batch = student_view(batch, labeled, cfg.data, teacher)
        autocast = torch.autocast(self.dist.device.type, enabled=self.use_amp)
        with autocast:
            predictions, rendered = self.ddp(student_batch)
        terms = loss_terms(
            predictions,
            rendered,
            student_batch,
            cfg.model,
            self.class_weights,
            cfg.data.classes.ignore_index,
            cfg.data.grid,
        )
        if not teacher.enabled:
            return terms, {}
        with autocast:
            pseudo_terms, monitors = teacher_student_terms(
                self.ema.module,
                batch,
                labeled,
                predictions,
                rendered,
                teacher,
                cfg.data,
                self.class_weights,
                (cfg.model.loss.silog_lambda, cfg.model.loss.silog_min_depth),
                pseudo_weight_factor(self.step, teacher.start_step, teacher.ramp_steps),
            )
        return {**terms, **pseudo_terms}, monitors

    def _train_step(self, batches: Iterator[dict]) -> dict[str, float]:
        """One optimizer step over ``accumulate_steps`` micro-batches."""
        tc = self.config.train
        data_time, term_sums, monitor_sums, tokens = 0.0, {}, {}, []
        for micro in range(tc.accumulate_steps):
            start = time.perf_counter()
            batch = to_device(next(batches), self.dist.device)
            data_time += time.perf_counter() - start
            tokens += [m["token"] for m in batch["meta"]]
            last = micro == tc.accumulate_steps - 1
            # DDP all-reduces gradients on the last micro-batch only.
            sync = (
                contextlib.nullcontext()
                if last or not self.dist.is_distributed
                else self.ddp.no_sync()
            )
            with sync:
                terms, monitors = self._losses(batch)
                total = sum(terms.values()) / tc.accumulate_steps
                self.scaler.scale(total).backward()
            for name, value in terms.items():
                term_sums[name] = term_sums.get(name, 0.0) + value.detach() / tc.accumulate_steps
            for name, pair in monitors.items():
                monitor_sums[name] = monitor_sums.get(name, 0.0) + pair.detach()
        self.scaler.unscale_(self.optimizer)
        max_norm = tc.grad_clip if tc.grad_clip else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        stepped = self.guard.check(self.step, term_sums, grad_norm, tokens, self.optimizer)
        if stepped:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model, self.step)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        names = sorted(term_sums)
        averaged = all_reduce_mean(torch.stack([term_sums[n].float() for n in names]))
        record = dict(zip(names, averaged.tolist()))
        record.update(
            loss=sum(record.values()),
            lr=self.scheduler.get_last_lr()[0],
            grad_norm=float(grad_norm),
            data_time=data_time,
            skipped=float(not stepped),
        )
        if monitor_sums:
            monitor_names = sorted(monitor_sums)
            # Means of sums and of counts over the ranks: their ratio is the global ratio.
            pairs = all_reduce_mean(torch.stack([monitor_sums[n].float() for n in monitor_names]))
            record.update(monitor_ratios(dict(zip(monitor_names, pairs))))
        return record

    def _save(self) -> None:
        tc = self.config.train
        epoch = self.step * tc.accumulate_steps // self.training.batches_per_epoch
        require_finite_weights_on_all_ranks(self.model, self.ema)
        rng_states = gather_rng_states()
        if self.is_main:
            path = save_checkpoint(
                checkpoint_path(self.work_dir, self.step),
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                scaler=self.scaler if self.use_amp else None,
                step=self.step,
                epoch=epoch,
                config_dict=to_dict(self.config),
                seed=tc.seed,
                ema=self.ema,
                extra={"nan_guard": self.guard.state_dict()},
                rng_states=rng_states,
            )
            prune_checkpoints(self.work_dir, tc.keep_last)
            self.log(f"saved {path}")
        barrier()

    def _log_step(
        self, record: dict[str, float], seconds: float, started: float, first: int
    ) -> None:
        tc = self.config.train
        samples = self.config.data.batch_size * tc.accumulate_steps * self.dist.world_size
        record["samples_per_s"] = samples / seconds
        record["memory_mb"] = peak_memory_mb(self.dist.device)
        record["rss_mb"] = resident_memory_mb()
        if self.is_main:
            append_record(self.work_dir / "metrics.jsonl", dict(step=self.step, **record))
        monitors = {k: v for k, v in record.items() if k.startswith(MONITOR_PREFIX)}
        terms = {k: v for k, v in record.items() if k not in _NON_LOSS_KEYS and k not in monitors}
        self.tb.scalars("train/loss", {**terms, "total": record["loss"]}, self.step)
        self.tb.scalars("train", monitors, self.step)
        self.tb.scalars("train", {k: record[k] for k in _NON_LOSS_KEYS if k != "loss"}, self.step)
        if self.step % tc.log_interval == 0 or self.step == tc.max_steps:
            done = self.step - first
            eta = (time.perf_counter() - started) / max(done, 1) * (tc.max_steps - self.step)
            parts = " ".join(f"{k}={v:.4f}" for k, v in terms.items())
            self.log(
                f"[{self.step}/{tc.max_steps}] {parts} lr={record['lr']:.2e} "
                f"grad_norm={record['grad_norm']:.3f} {record['samples_per_s']:.2f} samples/s "
                f"data={record['data_time']:.2f}s mem={record['memory_mb']:.0f}MB "
                f"eta {format_duration(eta)}"
            )

    def fit(self) -> TrainResult:
        tc = self.config.train
        if self.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(self.work_dir)
            atomic_save_json(self.work_dir / "config.json", to_dict(self.config))
        batches = self.training.batches(self.step * tc.accumulate_steps)
        history = []
        first, started = self.step, time.perf_counter()
        try:
            while self.step < tc.max_steps:
                start = time.perf_counter()
                record = self._train_step(batches)
                self.step += 1
                self._log_step(record, time.perf_counter() - start, started, first)
                history.append(record)
                if self.step % tc.checkpoint_interval == 0 or self.step == tc.max_steps:
                    self._save()
                evaluate_now = bool(tc.eval_interval) and self.step % tc.eval_interval == 0
                picture_now = bool(tc.image_interval) and self.step % tc.image_interval == 0
                if self.val_set is not None and (evaluate_now or picture_now):
                    self._validate(evaluate_now)
        finally:
            self.tb.close()
        return TrainResult(self.model, history, self.step)


_NON_LOSS_KEYS = (
    "loss",
    "lr",
    "grad_norm",
    "data_time",
    "skipped",
    "samples_per_s",
    "memory_mb",
    "rss_mb",
)


def train(
    config: ExperimentConfig, resume: str | None = None, log: Callable[[str], None] = console
) -> TrainResult:
    """Train ``config`` (resuming from a checkpoint path, or ``"auto"``: the latest in the
    work dir), then leave the process group if this call joined one."""
    trainer = Trainer(config, resume, log)
    try:
        with report_unanswered_ranks(lambda: trainer.step):
            return trainer.fit()
    finally:
        cleanup()
