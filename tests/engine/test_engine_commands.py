"""The engine's CLI commands: help texts, argument errors, importing BAM's published base learners."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from svf.cli import main
from svf.data.datasets import base_classes
from svf.models import build_base_learner, build_model


@pytest.mark.parametrize("command", ["train", "evaluate", "train-base", "pretrain", "figure4",
                                     "import-base-learner"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert "usage: svf " + command in capsys.readouterr().out


def test_missing_argument_is_named():
    result = subprocess.run([sys.executable, "-m", "svf", "train", "--spec", "{}"], capture_output=True, text=True)
    assert result.returncode == 2 and "--dataset-root" in result.stderr


def test_spec_that_is_neither_json_nor_a_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "svf", "evaluate", "--spec", str(tmp_path / "none.json"),
                             "--dataset-root", "x", "--splits", "y", "--model", "m", "--out", "o"],
                            capture_output=True, text=True)
    assert result.returncode == 5 and "neither JSON text nor an existing file" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_published_bam_base_learner(tmp_path):
    kwargs = dict(backbone="resnet50", width=0.125, depths=(1, 1, 1, 1), base_classes=base_classes("pascal", 1),
                  cls_dim=16)
    pspnet = build_base_learner(**kwargs)
    # BAM's best.pth: a 'state_dict' wrapper, DDP's 'module.' prefix and an unused encoder copy
    published = {"state_dict": {**{f"module.{k}": v for k, v in pspnet.state_dict().items()},
                                "module.encoder.0.weight": torch.zeros(1)}}
    torch.save(published, tmp_path / "best.pth")
    assert main(["import-base-learner", "--source", str(tmp_path / "best.pth"), "--out",
                 str(tmp_path / "model.pt")]) == 0
    state = torch.load(tmp_path / "model.pt")
    assert not any(k.startswith(("module.", "encoder.")) for k in state)
    bam = build_model("bam", backbone="resnet50", width=0.125, depths=(1, 1, 1, 1),
                      base_classes=base_classes("pascal", 1), reduce_dim=16, base_cls_dim=16)
    bam.load_base_learner(state)
    assert torch.equal(bam.layer0p[0].weight, pspnet.layer0[0].weight)


def _commands(parser, name="svf"):
    import argparse

    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _commands(sub, f"{name} {sub_name}")


def test_every_command_has_a_description_and_every_option_help_without_markup():
    import argparse

    from svf.cli import build_parser

    commands = dict(_commands(build_parser()))
    assert "svf bench loader" in commands and "svf bench-loader" not in commands  # one place for benchmarks
    for name, parser in commands.items():
        assert parser.description, name
        text = parser.format_help()
        assert "`" not in text, (name, [line for line in text.splitlines() if "`" in line])
        for action in parser._actions:
            assert action.help or isinstance(action, argparse._SubParsersAction), (name, action.dest)
    assert "--spec" in commands["svf train"].format_help() and "everything a run needs" in \
        commands["svf evaluate"].format_help()
    assert "best validation mIoU" in commands["svf train"].description
