"""What the tools share: the config and checkpoint arguments, split selection, the CPU
threads, the loaded model and dataset of an evaluation tool, and the one-line report of a
known error."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import torch

from renderlss.configuration import ConfigError
from renderlss.data.config import DataConfig
from renderlss.data.dataset import OccDataset
from renderlss.data.unlabeled import is_labeled, mark_unlabeled_keyframes
from renderlss.engine.build import WEIGHT_FIELDS, load_trained_model
from renderlss.engine.evaluation import eval_dataset
from renderlss.engine.experiment import ExperimentConfig, load_experiment
from renderlss.eval.config import EvalConfig
from renderlss.models.occupancy_net import OccupancyNet
from renderlss.records.infos import load_infos
from renderlss.train.checkpoint import CheckpointError, NonFiniteWeightsError
from renderlss.train.cpu_threads import choose_threads, usable_physical_cores
from renderlss.train.distributed import CollectiveTimeoutError, DistInfo, init_distributed
from renderlss.train.nan_guard import NonFiniteLossError

SPLITS = ("train", "val")
# What a tool reports as "error: ..." with exit status 2 instead of a traceback: a config
# that does not fit (ConfigError), pretrained weights that do not fit (WeightsFileError, a
# ValueError), checkpoints, and the data's missing files and bad samples, whose messages
# name the file, the sample and the field.
STARTUP_ERRORS = (ConfigError, CheckpointError, ValueError, FileNotFoundError)
# ... and, for a tool that trains or evaluates, the ways a run can fail on its own.
RUN_ERRORS = STARTUP_ERRORS + (NonFiniteLossError, NonFiniteWeightsError, CollectiveTimeoutError)


def split_infos(data: DataConfig, split: str) -> str | tuple[dict, list[dict]]:
    """The info file of ``split`` ("train" or "val") named by the config's data section.

    On the training split of a config that treats a share of the keyframes as unlabeled
    (``data.unlabeled.keyframe_fraction``), ``(metadata, records)`` of its labeled keyframes
    only: a threshold or a baseline fitted there must not read the labels the run goes
    without.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = getattr(data, f"{split}_infos")
    if not path:
        raise ValueError(f"data.{split}_infos is not set in the config")
    unlabeled = data.unlabeled
    if split != "train" or unlabeled.keyframe_fraction == 0:
        return path
    metadata, records = load_infos(path)
    marked = mark_unlabeled_keyframes(records, unlabeled.keyframe_fraction, unlabeled.seed)
    return metadata, [info for info in marked if is_labeled(info)]


def add_config_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """CONFIG and ``--cfg-options KEY=VALUE ...`` (``example``: overrides shown in the help)."""
    parser.add_argument("config", help="experiment config file (Python)")
    parser.add_argument(
        "--cfg-options",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help=f"config overrides, e.g. {example} (values are Python literals)",
    )


def add_evaluation_arguments(parser: argparse.ArgumentParser, default_split: str) -> None:
    """The arguments every evaluation tool shares: CONFIG, CKPT, --cfg-options, --split,
    --weights and --device."""
    add_config_arguments(parser, "eval.image_stride=8 data.workers=0")
    parser.add_argument("checkpoint", help="checkpoint file written by training")
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=default_split,
        help="info file of the config to read: data.<split>_infos (default %(default)s)",
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHT_FIELDS,
        default="model",
        help="the trained weights or the EMA teacher's (default %(default)s)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA when present), cpu, cuda (default auto)"
    )


def one_line(err: Exception) -> str:
    """The message of ``err`` on one line: its lines joined by " | ". An error re-raised from
    a DataLoader worker carries the worker's traceback in its message; of that only the
    original error (``<Type>: message...``, the traceback's last entry) is kept."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
    if starts:
        original = f"{type(err).__name__}: "
        ends = [i for i, line in enumerate(lines) if line.startswith(original)]
        lines = lines[: starts[0]] + (lines[ends[-1] :] if ends else lines[-1:])
    return " | ".join(lines)


def startup_error(err: Exception) -> int:
    """Report an error of :data:`STARTUP_ERRORS` or :data:`RUN_ERRORS` on stderr in one line
    (:func:`one_line`); the tool's exit status (2)."""
    print(f"error: {one_line(err)}", file=sys.stderr)
    return 2


def configure_cpu_threads(config: ExperimentConfig) -> int:
    """Set torch's CPU threads for this process from ``train.threads`` (0: chosen from
    ``OMP_NUM_THREADS``, the usable physical cores and torchrun's ``LOCAL_WORLD_SIZE``;
    see :func:`renderlss.train.cpu_threads.choose_threads`).

    Returns:
        the number of threads set.
    """
    threads = choose_threads(
        config.train.threads,
        os.environ.get("OMP_NUM_THREADS"),
        usable_physical_cores(),
        int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )
    torch.set_num_threads(threads)
    return threads


@dataclass
class EvaluationSetup:
    """What an evaluation tool works with, built from its arguments."""

    dist: DistInfo
    config: ExperimentConfig
    eval_config: EvalConfig
    model: OccupancyNet
    dataset: OccDataset


def setup_from_arguments(args: argparse.Namespace) -> EvaluationSetup:
    """Join torchrun's process group (if any), load the configs, the model and the dataset
    named by ``add_evaluation_arguments``' arguments."""
    config = load_experiment(args.config, args.cfg_options)
    configure_cpu_threads(config)
    dist = init_distributed(device=args.device, timeout_s=config.train.dist_timeout_s)
    model = load_trained_model(config, args.checkpoint, args.weights, dist.device)
    dataset = eval_dataset(config, split_infos(config.data, args.split))
    return EvaluationSetup(dist, config, config.eval, model, dataset)
