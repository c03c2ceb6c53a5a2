"""The command line: train, generate and evaluate from files, --help, and clear errors."""

import logging
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scvi_diffusion
from scvi_diffusion._cli import build_parser, main
from scvi_diffusion._cli._messages import _plain_messages

COMMANDS = ("demo", "train", "generate", "evaluate")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    train, test = scvi_diffusion.metrics.stratified_split(
        scvi_diffusion.data.pbmc68k(), "cell_type", random_state=0
    )
    train.write_h5ad(folder / "train.h5ad")
    test.write_h5ad(folder / "test.h5ad")
    return folder


@pytest.fixture(scope="module")
def trained(files):
    model = files / "model"
    args = ["train", str(files / "train.h5ad"), "--out", str(model)]
    assert main([*args, "--cell-type-key", "cell_type", "--max-epochs", "2"]) == 0
    return model


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: scvi-diffusion {command}" in capsys.readouterr().out


def test_train_generate_evaluate(files, trained, capsys):
    assert sorted(p.name for p in trained.iterdir()) == ["adata.h5ad", "model.pt"]
    out = files / "b_cells.h5ad"
    args = ["generate", str(trained), "-n", "50", "--cell-type", "CD19+ B", "--out", str(out)]
    assert main([*args, "--n-steps", "5", "--seed", "3"]) == 0
    synthetic = ad.read_h5ad(out)
    assert synthetic.shape == (50, 765)
    assert (synthetic.obs["cell_type"] == "CD19+ B").all()
    assert synthetic.uns["scdiffusion"]["seed"] == 3

    # the same request through the Python API gives the same cells
    model = scvi_diffusion.ScDiffusion.load(str(trained))
    same = model.generate(n=50, cell_type="CD19+ B", n_steps=5, seed=3, progress_bar=False)
    np.testing.assert_array_equal(same.X.toarray(), synthetic.X.toarray())

    table = files / "fidelity.csv"
    capsys.readouterr()
    assert main(["evaluate", str(files / "test.h5ad"), str(out), "--out", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "knn_auc" in printed and "floor" in printed
    frame = pd.read_csv(table, index_col=[0, 1])
    assert {"synthetic", "floor"} <= set(frame.columns)


def test_counterfactuals_from_a_file(files, trained):
    """``--source``: one cell per source cell, the requested condition changed, as the API."""
    out = files / "as_monocytes.h5ad"
    args = ["generate", str(trained), "--source", str(files / "test.h5ad"), "--out", str(out)]
    options = ["--cell-type", "CD14+ Monocyte", "--start-time", "300", "--n-steps", "5"]
    assert main([*args, *options, "--seed", "1"]) == 0
    counterfactual = ad.read_h5ad(out)
    test = ad.read_h5ad(files / "test.h5ad")
    assert list(counterfactual.obs["source_cell"]) == list(test.obs_names)
    assert (counterfactual.obs["cell_type"] == "CD14+ Monocyte").all()
    assert counterfactual.uns["scdiffusion"]["counterfactual"]["start_time"] == 300
    model = scvi_diffusion.ScDiffusion.load(str(trained))
    same = model.generate(
        source=test,
        cell_type="CD14+ Monocyte",
        start_time=300,
        n_steps=5,
        seed=1,
        progress_bar=False,
    )
    np.testing.assert_array_equal(same.X.toarray(), counterfactual.X.toarray())


def test_generate_with_conditions_and_separate_data(files, capsys):
    model = files / "model_without_data"
    args = ["train", str(files / "train.h5ad"), "--out", str(model), "--no-save-data"]
    assert main([*args, "--cell-type-key", "cell_type", "--max-epochs", "1", "--backed"]) == 0
    assert sorted(p.name for p in model.iterdir()) == ["model.pt"]
    out = str(files / "monocytes.h5ad")
    request = ["generate", str(model), "-n", "20", "--out", out, "--n-steps", "3"]
    with pytest.raises(SystemExit) as exit_:
        main([*request, "--condition", "cell_type=CD14+ Monocyte"])
    assert exit_.value.code == 2
    assert "No AnnData was saved with the model" in capsys.readouterr().err
    data = ["--data", str(files / "train.h5ad")]
    assert main([*request, *data, "--condition", "cell_type=CD14+ Monocyte"]) == 0
    assert (ad.read_h5ad(out).obs["cell_type"] == "CD14+ Monocyte").all()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "missing.h5ad", "--out", "m"], "No file at 'missing.h5ad'"),
        (["generate", "no_model", "--out", "x.h5ad"], "No saved model"),
        (
            ["generate", "no_model", "--out", "x.h5ad", "--start-time", "100"],
            "--start-time applies to counterfactuals",
        ),
        (["evaluate", "a.h5ad", "b.h5ad"], "No file at 'a.h5ad'"),
    ],
)
def test_bad_input_is_an_error_message_not_a_traceback(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def _unreadable_files(folder, source):
    """Files named .h5ad that are not readable AnnData files."""
    notes = folder / "notes.h5ad"
    notes.write_text("cell,gene\nAAAC,3\n")
    empty = folder / "empty.h5ad"
    empty.write_bytes(b"")
    truncated = folder / "truncated.h5ad"
    content = source.read_bytes()
    truncated.write_bytes(content[: len(content) // 2])
    return {"text": notes, "empty": empty, "truncated": truncated}


@pytest.mark.parametrize("kind", ["text", "empty", "truncated"])
@pytest.mark.parametrize("command", ["train", "train --backed", "evaluate", "generate --data"])
def test_unreadable_files_are_one_line_errors(files, trained, kind, command, capsys, tmp_path):
    path = str(_unreadable_files(tmp_path, files / "train.h5ad")[kind])
    argv = {
        "train": ["train", path, "--out", str(tmp_path / "m")],
        "train --backed": ["train", path, "--out", str(tmp_path / "m"), "--backed"],
        "evaluate": ["evaluate", str(files / "test.h5ad"), path],
        "generate --data": ["generate", str(trained), "--data", path, "--out", "x.h5ad"],
    }[command]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"scvi-diffusion {command.split()[0]}: error: Cannot read {path!r}")
    assert "as an AnnData .h5ad file" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_bad_values_are_reported(files, trained, capsys):
    argv = ["train", str(files / "train.h5ad"), "--out", str(files / "m2")]
    with pytest.raises(SystemExit):
        main([*argv, "--cell-type-key", "celltype"])
    assert "'celltype' is not a column of adata.obs" in capsys.readouterr().err
    argv = ["generate", str(trained), "--out", str(files / "x.h5ad"), "--cell-type", "Neuron"]
    with pytest.raises(SystemExit):
        main(argv)
    assert "Unknown value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", str(trained), "--out", "x.h5ad", "--condition", "cell_type"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_parser_lists_the_commands():
    assert set(COMMANDS) <= set(build_parser()._subparsers._group_actions[0].choices)


def test_out_is_checked_before_training(files, trained, capsys, tmp_path):
    before = sorted(p.name for p in trained.iterdir())
    argv = ["train", str(files / "train.h5ad"), "--cell-type-key", "cell_type"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--out", str(trained)])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert "already exists; add --overwrite to replace the model" in captured.err
    assert "overwrite=True" not in captured.err
    # it stopped before reading the data, let alone training
    assert captured.out == ""
    assert sorted(p.name for p in trained.iterdir()) == before
    a_file = tmp_path / "model.txt"
    a_file.write_text("")
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(a_file)])
    assert "is a file; give a folder" in capsys.readouterr().err


def test_warnings_are_one_plain_line(files, capsys, tmp_path):
    model = tmp_path / "two_conditions"
    argv = ["train", str(files / "train.h5ad"), "--out", str(model), "--max-epochs", "1"]
    assert main([*argv, "--cell-type-key", "cell_type", "--condition-key", "phase"]) == 0
    capsys.readouterr()
    # no training cell is a monocyte in G2M: a combination outside the training distribution
    request = [
        "generate",
        str(model),
        "-n",
        "5",
        "--n-steps",
        "3",
        "--out",
        str(tmp_path / "x.h5ad"),
    ]
    assert main([*request, "--cell-type", "CD14+ Monocyte", "--condition", "phase=G2M"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    warned = [line for line in err if "outside the training distribution" in line]
    assert len(warned) == 1
    assert warned[0].startswith("scvi-diffusion: warning: No training cell has")
    assert not [line for line in err if ".py:" in line or "model.generate(" in line]


def test_log_records_are_one_plain_line(capsys):
    with _plain_messages():
        logging.getLogger("scvi.diffusion").warning("a message\n  over two lines")
    assert capsys.readouterr().err == "scvi-diffusion: warning: a message over two lines\n"


def test_help_and_argument_errors_import_nothing_heavy():
    """`--help` and argument errors answer at once: without torch, scvi-tools or scanpy."""
    script = (
        "import sys\n"
        "from scvi_diffusion._cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['train', 'x.h5ad'], ['nope']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'scvi', 'scanpy', 'anndata') if m in sys.modules]\n"
        "print('heavy:', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "usage: scvi-diffusion" in result.stdout
    assert "the following arguments are required: --out" in result.stderr
    assert "heavy: []" in result.stderr


def test_out_in_a_folder_that_cannot_be_written(files, capsys, monkeypatch, tmp_path):
    # the tests may run as root, who may write anywhere: the check asks os.access
    monkeypatch.setattr("scvi_diffusion._paths.os.access", lambda path, mode: False)
    argv = ["train", str(files / "train.h5ad"), "--out", str(tmp_path / "new" / "model")]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert f"Cannot write in {str(tmp_path)!r}" in capsys.readouterr().err
