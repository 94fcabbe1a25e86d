"""What the tools share: the config and checkpoint arguments, split selection, the loaded
model and dataset of an evaluation tool, and the error report of a tool that cannot start."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from renderlss.configuration import ConfigError
from renderlss.data.dataset import OccDataset
from renderlss.engine.build import WEIGHT_FIELDS, load_trained_model
from renderlss.engine.evaluation import eval_dataset
from renderlss.engine.experiment import ExperimentConfig, load_experiment
from renderlss.eval.config import EvalConfig
from renderlss.models.occupancy_net import OccupancyNet
from renderlss.train.checkpoint import CheckpointError
from renderlss.train.distributed import DistInfo, init_distributed

SPLITS = ("train", "val")
# What a tool reports as "error: ..." with exit status 2 instead of a traceback.
STARTUP_ERRORS = (ConfigError, CheckpointError, ValueError, FileNotFoundError)


def split_infos(config: ExperimentConfig, split: str) -> str:
    """The info file of ``split`` ("train" or "val") named by the config's data section."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = getattr(config.data, f"{split}_infos")
    if not path:
        raise ValueError(f"data.{split}_infos is not set in the config")
    return path


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


def startup_error(err: Exception) -> int:
    """Report an error of :data:`STARTUP_ERRORS` on stderr; the tool's exit status (2)."""
    print(f"error: {err}", file=sys.stderr)
    return 2


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
    dist = init_distributed(device=args.device)
    config = load_experiment(args.config, args.cfg_options)
    model = load_trained_model(config, args.checkpoint, args.weights, dist.device)
    dataset = eval_dataset(config, split_infos(config, args.split))
    return EvaluationSetup(dist, config, config.eval, model, dataset)
