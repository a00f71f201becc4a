"""`predict` on files: chunks, the API's rules per column, rejects with their line."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.module_name }} import (
    batch_scoring,
)
from {{ cookiecutter.module_name }}.api import create_app
from {{ cookiecutter.module_name }}.artifact import (
    read_model_dir,
)
from {{ cookiecutter.module_name }}.batch_scoring import (
    ChunkScorer,
    check_chunk,
)
from {{ cookiecutter.module_name }}.cli import main
from {{ cookiecutter.module_name }}.engines import partitions
from {{ cookiecutter.module_name }}.serving.settings import (
    ServeSettings,
)


@pytest.fixture(scope="module")
def model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
) -> Path:
    path = tmp_path_factory.mktemp("model")
    write_model_dir(path, make_frame(rows=400), Path(__file__).resolve().parents[1], "4")
    return path


def with_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows 1-3 of the file break one rule each; the rest are good."""
    bad = frame.drop(columns=["label"]).astype({"size": object})
    bad.loc[1, "noise"] = math.nan  # never missing in training
    bad.loc[2, "colour"] = "teal"  # unseen category
    bad.loc[3, "size"] = "tall"  # not a number
    return bad


def predict(*args: str) -> int:
    return main(["predict", *args])


def test_good_rows_are_scored_and_bad_rows_rejected_by_line(
    model_dir: Path,
    make_frame: Callable[..., pd.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    frame = with_bad_rows(make_frame(rows=300, seed=5))
    frame.insert(0, "customer", [f"c{row}" for row in range(len(frame))])
    frame.to_csv(source, index=False)

    code = predict("--input", str(source), "--output", str(output), "--model-dir",
                   str(model_dir), "--keep", "customer", "--chunk-rows", "64")  # fmt: skip

    assert code == 1  # some rows rejected, the rest scored
    scored = pd.read_csv(output)
    assert list(scored.columns) == [
        "customer", "prediction", "proba_no", "proba_yes", "model_name", "model_version",
        "prediction_id",
    ]  # fmt: skip
    assert len(scored) == 297
    assert "c1" not in set(scored["customer"])
    assert scored["prediction_id"].is_unique
    assert set(scored["model_version"].astype(str)) == {"4"}
    rejects = pd.read_csv(tmp_path / "out.csv.rejects.csv")
    assert rejects["line"].tolist() == [3, 4, 5]  # the header is line 1
    assert rejects["field"].tolist() == ["noise", "colour", "size"]
    assert rejects["reason"].tolist() == [
        "missing (it was never missing in training)",
        "a category not seen in training: teal",
        "not a number: tall",
    ]
    assert "300 rows: 297 scored, 3 rejected" in capsys.readouterr().out


def test_a_missing_column_stops_the_job_naming_it(
    model_dir: Path,
    make_frame: Callable[..., pd.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = tmp_path / "in.csv"
    make_frame(rows=20).drop(columns=["noise"]).to_csv(source, index=False)

    code = predict("--input", str(source), "--output", str(tmp_path / "out.csv"),
                   "--model-dir", str(model_dir))  # fmt: skip

    assert code == 2
    assert "feature column(s) ['noise'] missing" in capsys.readouterr().err
    assert predict("--input", str(tmp_path / "absent.csv"), "--output", "o.csv") == 2


def test_kept_columns_are_copied_as_the_text_they_were(
    model_dir: Path, make_frame: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    source, output = tmp_path / "in.csv", tmp_path / "out.csv"
    frame = make_frame(rows=3, seed=2).drop(columns=["label"])
    frame.insert(0, "account", ["007", "1e3", "Smith, J."])  # not numbers, and a comma
    frame.to_csv(source, index=False)

    assert predict("--input", str(source), "--output", str(output), "--model-dir",
                   str(model_dir), "--keep", "account") == 0  # fmt: skip

    lines = output.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("account,prediction,proba_no,proba_yes,")
    assert [line.split(",")[0] for line in lines[1:3]] == ["007", "1e3"]
    assert lines[3].startswith('"Smith, J.",')
    assert pd.read_csv(output, dtype={"account": str})["account"].tolist() == [
        "007", "1e3", "Smith, J."
    ]  # fmt: skip


def test_a_kept_column_empty_in_a_whole_chunk_keeps_its_type(
    model_dir: Path, make_frame: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    source, output = tmp_path / "in.csv", tmp_path / "out.parquet"
    frame = make_frame(rows=20, seed=6).drop(columns=["label"])
    frame.insert(0, "note", ["x"] * 10 + [None] * 10)  # the second chunk has no note at all
    frame.to_csv(source, index=False)

    assert predict("--input", str(source), "--output", str(output), "--model-dir",
                   str(model_dir), "--keep", "note", "--chunk-rows", "10") == 0  # fmt: skip

    notes = pd.read_parquet(output)["note"]
    assert notes.head(10).tolist() == ["x"] * 10
    assert notes.tail(10).isna().all()


def test_an_empty_or_unreadable_csv_stops_the_job_naming_it(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "out.csv"
    cases = {
        "empty.csv": ("", "the file is empty; a header row is needed"),
        "blank.csv": ("\n\n", "the file is empty; a header row is needed"),
        "ragged.csv": ("a,b\n1,2\n3,4,5,6\n", "not a readable CSV: Error tokenizing data"),
    }
    for name, (text, reason) in cases.items():
        source = tmp_path / name
        source.write_text(text, encoding="utf-8")
        code = predict("--input", str(source), "--output", str(output),
                       "--model-dir", str(model_dir))  # fmt: skip
        error = capsys.readouterr().err
        assert code == 2, error
        assert f"error: {source}: {reason}" in error
        assert "Traceback" not in error
        assert not output.exists()
        assert not list(tmp_path.glob("*.partial")), "nothing is left behind"


def test_parquet_in_and_out_match_the_server(
    model_dir: Path, make_frame: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    frame = make_frame(rows=200, seed=9).drop(columns=["label"])
    source, output = tmp_path / "in.parquet", tmp_path / "out.parquet"
    frame.to_parquet(source, index=False)

    assert predict("--input", str(source), "--output", str(output),
                   "--model-dir", str(model_dir)) == 0  # fmt: skip

    scored = pd.read_parquet(output)
    records = [
        {key: (None if value != value else value) for key, value in row.items()}
        for row in frame.to_dict(orient="records")
    ]
    with TestClient(create_app(ServeSettings(model_dir=model_dir))) as client:
        answer = client.post("/predict", json=records).json()
    assert scored["prediction"].tolist() == answer["predictions"]
    expected = np.asarray(answer["probabilities"])
    assert np.allclose(scored[["proba_no", "proba_yes"]].to_numpy(), expected)


def test_auto_hands_large_chunks_of_a_long_job_to_the_library(
    make_frame: Callable[..., pd.DataFrame],
    write_model_dir: Callable[..., Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import mlflow.sklearn
    import skops.io

    extras, directory = tmp_path / "extras", tmp_path / "model"
    root = Path(__file__).resolve().parents[1]
    pipeline = write_model_dir(extras, make_frame(rows=400), root, "1")
    trusted = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    mlflow.sklearn.save_model(pipeline, str(directory), serialization_format="skops",
                              skops_trusted_types=trusted)  # fmt: skip
    shutil.copytree(extras, directory, dirs_exist_ok=True)  # what export-model writes
    model = read_model_dir(directory, "champion", {})
    frame = make_frame(rows=3000, seed=8).drop(columns=["label"])
    big = check_chunk(frame, model.schema, 2)
    small = check_chunk(frame.head(10), model.schema, 2)
    threshold = batch_scoring.LIBRARY_FROM_ROWS["random_forest"]
    assert len(frame) >= threshold > 10

    scorer = ChunkScorer(model, "auto")
    scorer.switch(batch_scoring.SWITCH_AFTER_SECONDS / 2)  # a short job: not worth the load
    assert scorer.pipeline is None
    assert not scorer.uses_library(len(frame))
    scorer.switch(batch_scoring.SWITCH_AFTER_SECONDS * 2)
    assert scorer.pipeline is not None
    assert scorer.uses_library(len(frame))
    assert not scorer.uses_library(10)
    predictions, probabilities = scorer.predict(big)
    assert predictions.tolist() == pipeline.predict(frame).tolist()
    assert np.array_equal(probabilities, pipeline.predict_proba(frame))  # the library's, exactly
    numpy = ChunkScorer(model, "numpy")
    numpy.switch(batch_scoring.SWITCH_AFTER_SECONDS * 2)
    assert not numpy.uses_library(len(frame))
    assert np.allclose(numpy.predict(big)[1], probabilities, atol=1e-9)  # the same model
    assert np.allclose(scorer.predict(small)[1], numpy.predict(small)[1])
    assert scorer.chunks == {"numpy": 1, "library": 1}  # a few rows went to numpy

    # the whole job: numpy for the first chunk, the library for the next full ones, numpy
    # for the short last one; the same predictions as numpy alone
    monkeypatch.setattr(batch_scoring, "SWITCH_AFTER_SECONDS", 0.0)
    source = tmp_path / "in.csv"
    pd.concat([frame, frame, frame.head(10)]).to_csv(source, index=False)
    expected = {"auto": "chunks: 2 by numpy, 1 by library", "numpy": "chunks: 3 by numpy"}
    for predictor, chunks in expected.items():
        assert predict("--input", str(source), "--output", str(tmp_path / f"{predictor}.csv"),
                       "--model-dir", str(directory), "--chunk-rows", str(len(frame)),
                       "--predictor", predictor) == 0  # fmt: skip
        assert chunks in capsys.readouterr().out
    auto, numpy_only = (pd.read_csv(tmp_path / f"{name}.csv") for name in ("auto", "numpy"))
    assert auto["prediction"].tolist() == numpy_only["prediction"].tolist()
    columns = ["proba_no", "proba_yes"]
    assert np.allclose(auto[columns], numpy_only[columns], atol=1e-9)


def peak_rss_kib(*command: str) -> int:
    """The peak RSS of `command`, run in a fresh process, as the kernel counted it."""
    script = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, *command], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_memory_is_bounded_by_the_chunk_not_the_file(
    model_dir: Path, make_frame: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    peaks = {}
    for rows in (20_000, 200_000):
        source = tmp_path / f"{rows}.csv"
        make_frame(rows=rows, seed=rows).drop(columns=["label"]).to_csv(source, index=False)
        cli = [sys.executable, "-m", main.__module__.split(".")[0], "predict"]
        peaks[rows] = peak_rss_kib(*cli, "--input", str(source), "--output",
                                   str(tmp_path / f"{rows}.out.csv"), "--model-dir",
                                   str(model_dir), "--chunk-rows", "10000")  # fmt: skip
    assert peaks[200_000] <= 1.5 * peaks[20_000], peaks


def test_a_failed_job_leaves_the_previous_output_as_it_was(
    model_dir: Path, make_frame: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    source, output = tmp_path / "in.csv", tmp_path / "out.parquet"
    make_frame(rows=50, seed=3).drop(columns=["label"]).to_csv(source, index=False)
    assert predict("--input", str(source), "--output", str(output),
                   "--model-dir", str(model_dir)) == 0  # fmt: skip
    before = output.read_bytes()

    assert predict("--input", str(source), "--output", str(output), "--model-dir",
                   str(model_dir), "--keep", "no_such_column") == 2  # fmt: skip

    assert output.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.csv", "out.parquet"]


def test_urls_need_their_filesystem_and_it_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = str(tmp_path / "out.csv")
    assert predict("--input", "nosuch://bucket/in.csv", "--output", output) == 2
    assert "nosuch://bucket/in.csv: no filesystem reads nosuch:// URLs" in capsys.readouterr().err

    # a scheme whose backend this project lacks (each DVC remote brings its own)
    backends = {"s3": "s3fs", "gs": "gcsfs", "az": "adlfs"}
    scheme = next(name for name, package in backends.items() if not find_spec(package))
    assert predict("--input", f"{scheme}://bucket/in.csv", "--output", output) == 2
    error = capsys.readouterr().err
    assert f"reading {scheme}:// URLs needs {backends[scheme]} (uv add 'dvc[" in error
    assert not Path(output).exists()


def test_a_terminal_gets_a_progress_bar(
    model_dir: Path, make_frame: Callable[..., pd.DataFrame], tmp_path: Path
) -> None:
    source = tmp_path / "in.csv"
    make_frame(rows=3000, seed=4).drop(columns=["label"]).to_csv(source, index=False)
    main_tty, worker_tty = pty.openpty()
    # 24 x 100 characters: a new pty has no size, and tqdm would draw a bar of width 0
    fcntl.ioctl(worker_tty, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    cli = [sys.executable, "-m", main.__module__.split(".")[0], "predict"]
    arguments = ["--input", str(source), "--output", str(tmp_path / "out.csv"),
                 "--model-dir", str(model_dir), "--chunk-rows", "1000"]  # fmt: skip
    done = subprocess.run(
        [*cli, *arguments], stderr=worker_tty, stdout=subprocess.PIPE, text=True, check=True,
        timeout=120,
    )  # fmt: skip
    os.close(worker_tty)
    shown = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's writer is gone
        while chunk := os.read(main_tty, 4096):
            shown += chunk
    os.close(main_tty)
    assert "100%|" in shown.decode(), shown  # tqdm's bar, redrawn in place
    assert "3,000 rows, 0 rejected" in shown.decode()
    assert "3000 rows: 3000 scored, 0 rejected" in done.stdout


def test_an_engine_takes_a_directory_of_parquet_files_and_says_where_it_is_installed(
    model_dir: Path,
    make_frame: Callable[..., pd.DataFrame],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    parts = tmp_path / "parts"
    parts.mkdir()
    for part in range(2):
        make_frame(rows=10, seed=part).to_parquet(parts / f"part-{part}.parquet", index=False)
    (parts / "notes.txt").write_text("not a partition", encoding="utf-8")
    assert partitions(str(parts)) == [str(parts / "part-0.parquet"), str(parts / "part-1.parquet")]
    assert partitions(str(parts / "*-1.parquet")) == [str(parts / "part-1.parquet")]

    code = predict("--engine", "dask", "--input", str(parts), "--output",
                   str(tmp_path / "scored"), "--model-dir", str(model_dir))  # fmt: skip
    if find_spec("distributed") is None:  # the project's own environment: no Dask in it
        assert code == 2
        assert "`make engine-setup` installs it in .venv-dask" in capsys.readouterr().err
    else:  # .venv-dask: the engine runs (the template's e2e test compares its output)
        assert code == 0
