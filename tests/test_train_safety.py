"""A run survives bad images, errors and signals; --resume needs only --data/--out/--resume.

Start-up header check (refused with the list, exit 2), images failing later (skipped and
counted, or --on-bad-image stop), SIGTERM/SIGINT to a training process (saved, resumable,
equal to an uninterrupted run), exceptions in the loop (saved first), the restored
configuration and the loss log after a crash.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from imgfactory import photo_like, write_corrupt_png, write_text_file
from safetensors.torch import load_file

from img2img.cli import train_main
from img2img.config import TrainConfig
from img2img.data.io import write_image
from img2img.engine.interrupt import Aborted, BadImageStop, stop_signals
from img2img.engine.logs import LossLog
from img2img.engine.resume_config import restore_config
from img2img.engine.state import RESUME_FILE, load_resume, save_resume
from img2img.engine.trainer import Trainer, train
from img2img.errors import UsageError
from img2img.tasks import make_config

ROOT = Path(__file__).resolve().parents[1]
# One torch thread here and in the training subprocesses (OMP_NUM_THREADS=1): runs
# compared bit for bit must reduce in the same order.
pytestmark = pytest.mark.usefixtures("one_torch_thread")
FLAGS = ["--generator", "resnet_6blocks", "--ngf", "8", "--ndf", "8", "--crop-size", "32",
         "--load-size", "36", "--device", "cpu", "--quiet", "--sample-every", "0",
         "--save-every", "0", "--log-every", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("safety")
    for i in range(12):
        write_image(root / "trainA" / f"a{i}.png", photo_like(40, 40, seed=i))
        write_image(root / "trainB" / f"b{i}.png", photo_like(40, 40, seed=100 + i))
    return root


@pytest.fixture
def data(source: Path, tmp_path: Path) -> Path:
    """A copy of the toy data that a test may damage."""
    return Path(shutil.copytree(source, tmp_path / "data"))


def tiny(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(task="cyclegan", data=str(data), out=str(out), steps=20, batch_size=2,
                generator="resnet_6blocks", ngf=8, ndf=8, load_size=36, crop_size=32,
                workers=0, device="cpu", quiet=True, sample_every=0, save_every=0, seed=3,
                log_every=1)
    base.update(kw)
    return make_config(**base)


def same_weights(a: Path, b: Path, name: str = "G_A2B.safetensors") -> bool:
    wa, wb = load_file(str(a / name)), load_file(str(b / name))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def logged_steps(out: Path) -> list[int]:
    path = out / "losses.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(source: Path, tmp_path_factory: pytest.TempPathFactory,
             one_torch_thread: None) -> Path:
    """The uninterrupted 20-step run the interrupted ones must equal."""
    out = tmp_path_factory.mktemp("straight") / "run"
    train(tiny(source, out))
    return out


# --- start-up check ----------------------------------------------------------------------
def test_corrupt_files_are_refused_at_startup(data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    write_text_file(data / "trainA", "broken.png")
    (data / "trainB" / "empty.jpg").write_bytes(b"")
    out = tmp_path / "run"
    code = train_main(["--data", str(data), "--out", str(out), "--steps", "2", *FLAGS])
    err = capsys.readouterr().err
    assert code == 2
    assert "broken.png: not an image file" in err and "empty.jpg: empty file" in err
    assert "2 of 26 training images cannot be used" in err
    assert "Traceback" not in err
    assert not out.exists(), "nothing is trained or written"


def test_preprocess_none_needs_the_network_minimum(data: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    write_image(data / "trainA" / "tiny.png", photo_like(6, 30, seed=1))
    args = ["--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1",
            "--preprocess", "none", "--batch-size", "1", "--pool-size", "0", *FLAGS]
    assert train_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert "tiny.png: 30x6 is smaller than the network's minimum input 8x8" in err


def test_preprocess_none_batches_need_one_size(data: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    write_image(data / "trainB" / "wide.png", photo_like(40, 64, seed=1))
    args = ["--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1",
            "--preprocess", "none", "--batch-size", "2", *FLAGS]
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert "wide.png: 64x40, but most images in trainB are 40x40" in err
    assert "--batch-size 2" in err


# --- images failing after the start-up check --------------------------------------------
def test_image_failing_later_is_skipped_and_counted(data: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """Scrambled pixel data passes the header check and fails when drawn (in a worker
    process): the sample takes the next image, the count reaches losses.jsonl."""
    write_corrupt_png(data / "trainA", "a5.png", size=(40, 40))
    trainer = Trainer(tiny(data, tmp_path / "run", workers=1))
    draws = sum(bool(trainer.dataset[k]["bad"]) for k in range(40))  # 20 steps x batch 2
    assert draws >= 2, "the bad file is drawn more than once (12 files, 40 samples)"
    with caplog.at_level(logging.WARNING):
        trainer.run()
    records = [json.loads(x) for x in
               (tmp_path / "run" / "losses.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 20 and records[-1]["bad_images"] == draws
    warnings = [r.getMessage() for r in caplog.records if "a5.png" in r.getMessage()]
    assert len(warnings) == 1 and "replaced by the next one" in warnings[0]
    assert load_resume(tmp_path / "run" / RESUME_FILE)["bad_images"] == draws


def test_bad_image_stop_saves_the_last_step_and_resumes_exactly(
        data: Path, tmp_path: Path, straight: Path) -> None:
    good = (data / "trainA" / "a7.png").read_bytes()
    out = tmp_path / "run"
    trainer = Trainer(tiny(data, out, on_bad_image="stop"))
    (data / "trainA" / "a7.png").write_bytes(b"overwritten after the start-up check")
    first = next(k for k in range(40) if trainer.dataset[k]["bad"])
    with pytest.raises(BadImageStop, match="a7.png: not an image file.*stopped at step"):
        trainer.run()
    assert load_resume(out / RESUME_FILE)["step"] == first // 2
    assert logged_steps(out) == list(range(1, first // 2 + 1))
    (data / "trainA" / "a7.png").write_bytes(good)
    train(tiny(data, out, resume=True, on_bad_image="stop"))
    assert same_weights(out, straight), "stop + fix + resume == uninterrupted run"


def test_error_in_the_loop_saves_first(data: Path, tmp_path: Path, straight: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    trainer = Trainer(tiny(data, out))
    step = trainer.task.train_step
    calls = []

    def failing(batch: dict) -> dict:
        calls.append(1)
        if len(calls) == 8:
            raise RuntimeError("out of memory (simulated)")
        return step(batch)

    monkeypatch.setattr(trainer.task, "train_step", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        trainer.run()
    assert load_resume(out / RESUME_FILE)["step"] == 7
    train(tiny(data, out, resume=True))
    assert same_weights(out, straight)
    assert logged_steps(out) == list(range(1, 21))


def test_log_after_a_hard_crash_has_each_step_once(data: Path, tmp_path: Path,
                                                   straight: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed at step 11 (no save: as with kill -9) after saves at 4 and 8: the resumed
    run logs steps 9-11 again, and the log keeps them once."""
    out = tmp_path / "run"
    trainer = Trainer(tiny(data, out, save_every=4, log_format="csv"))
    step = trainer.task.train_step
    calls = []

    def dying(batch: dict) -> dict:
        calls.append(1)
        if len(calls) == 12:
            raise SystemExit("killed")
        return step(batch)

    monkeypatch.setattr(trainer.task, "train_step", dying)
    monkeypatch.setattr(trainer, "_save_after_error", lambda phase: None)
    with pytest.raises(SystemExit):
        trainer.run()
    assert load_resume(out / RESUME_FILE)["step"] == 8
    train(tiny(data, out, resume=True, save_every=4, log_format="csv"))
    rows = (out / "losses.csv").read_text().splitlines()
    assert rows[0].startswith("step,time,lr,")
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(1, 21))
    assert same_weights(out, straight)


# --- signals -----------------------------------------------------------------------------
def _start(data: Path, out: Path, steps: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "--data", str(data), "--out",
           str(out), "--steps", str(steps), "--batch-size", "2", "--workers", "1", *FLAGS]
    # own process group: the signal goes to the whole group, loader worker included, as a
    # Ctrl-C in a terminal or a batch scheduler's SIGTERM does
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT, start_new_session=True)


@pytest.fixture(scope="module")
def straight60(source: Path, tmp_path_factory: pytest.TempPathFactory,
               one_torch_thread: None) -> Path:
    out = tmp_path_factory.mktemp("straight60") / "run"
    train(tiny(source, out, steps=60))
    return out


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_saves_and_resume_equals_an_uninterrupted_run(
        source: Path, tmp_path: Path, straight60: Path, signum: int, code: int) -> None:
    """The signal is sent once step 1 is logged (59 steps of ~50 ms remain, the poll takes
    5 ms): the run stops after the step in progress."""
    out = tmp_path / "run"
    proc = _start(source, out, 60)
    log_file = out / "losses.jsonl"
    deadline = time.monotonic() + 240
    while not (log_file.is_file() and log_file.read_text()):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no step was logged"
        time.sleep(0.005)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == code, err[-2000:]
    stopped = load_resume(out / RESUME_FILE)["step"]
    assert 1 <= stopped < 60
    assert f"interrupted at step {stopped}: saved; continue with --resume" in err
    assert "Traceback" not in err
    assert logged_steps(out) == list(range(1, stopped + 1))
    # the architecture and run flags come back from the run folder
    assert train_main(["--data", str(source), "--out", str(out), "--resume"]) == 0
    assert load_resume(out / RESUME_FILE)["step"] == 60
    assert same_weights(out, straight60) and same_weights(out, straight60, "G_B2A.safetensors")
    assert logged_steps(out) == list(range(1, 61))


# --- configuration on --resume -----------------------------------------------------------
def test_resume_restores_the_configuration(source: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    args = ["--data", str(source), "--out", str(out), "--steps", "4", "--stop-after", "2",
            "--workers", "0", *FLAGS]
    assert train_main(args) == 0
    base = ["--data", str(source), "--out", str(out), "--resume"]
    capsys.readouterr()
    assert train_main([*base, "--ngf", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --ngf 32 conflicts with the run in {out} (ngf 8); resume without "
                   f"it or start a new --out")
    assert train_main([*base, "--ngf", "32", "--generator", "unet_128"]) == 2
    assert ("--generator unet_128 and --ngf 32 conflict with the run in"
            in capsys.readouterr().err)
    assert load_resume(out / RESUME_FILE)["step"] == 2, "a refused resume changes nothing"
    # repeating a flag with its saved value is fine; --stop-after/--save-every may change
    assert train_main([*base, "--ngf", "8", "--stop-after", "1", "--save-every", "1"]) == 0
    assert load_resume(out / RESUME_FILE)["step"] == 3
    # a resume file without its configuration (older files): config.json is used
    state = load_resume(out / RESUME_FILE)
    del state["config"], state["bad_images"]  # as written before these existed
    save_resume(out / RESUME_FILE, state)
    assert train_main(base) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["ngf"] == 8 and saved["generator"] == "resnet_6blocks"
    assert load_resume(out / RESUME_FILE)["step"] == 4


def test_restore_config_overrides_schedule_and_refuses_method_changes() -> None:
    saved = tiny(Path("d"), Path("o"), steps=None, epochs=5, epochs_decay=5, lr=1e-3).to_dict()
    now = make_config(data="d2", out="o", steps=50, workers=4, ngf=64, resume=True)
    cfg = restore_config(now, saved, {"data", "out", "steps", "workers", "resume"}, "o")
    assert (cfg.steps, cfg.epochs, cfg.epochs_decay) == (50, None, None)
    assert (cfg.data, cfg.workers, cfg.options.ngf, cfg.options.lr, cfg.resume) == (
        "d2", 4, 8, 1e-3, True)
    with pytest.raises(UsageError, match=r"^--lr 0.1 conflicts with the run in o \(lr 0.001\)"):
        restore_config(make_config(lr=0.1), saved, {"lr"}, "o")
    with pytest.raises(UsageError, match="--no-flip conflicts"):
        restore_config(TrainConfig(no_flip=True), saved, {"no_flip"}, "o")
    older = {k: v for k, v in saved.items() if k != "on_bad_image"}  # a field added later
    assert restore_config(TrainConfig(on_bad_image="stop"), older, set(), "o"
                          ).on_bad_image == "stop"


def test_loss_log_drops_later_and_cut_off_records(tmp_path: Path) -> None:
    (tmp_path / "losses.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"st')
    with (tmp_path / "losses.csv").open("w", newline="") as f:
        f.write("step,lr\r\n1,0.1\r\n2,0.1\r\n3,0.1\r\n")
    log = LossLog(tmp_path, "csv", start_step=2)
    log.write(3, {"lr": 0.2, "bad_images": 1})  # a column that appears later
    assert logged_steps(tmp_path) == [1, 2]
    lines = (tmp_path / "losses.csv").read_text().splitlines()
    assert lines[:3] == ["step,lr,time,bad_images", "1,0.1,,", "2,0.1,,"]
    assert lines[3].startswith("3,0.2,") and lines[3].endswith(",1")  # the time in between


def test_stop_signals_defer_the_first_and_abort_on_the_second() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM and stop.name == "SIGTERM"
        with pytest.raises(Aborted):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
