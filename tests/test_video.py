"""Videos through ``img2img translate``: what a user notices in the output file.

Short synthetic clips (24 frames of 48x32 at 12 fps, with a sine tone) are made with PyAV;
a tiny random-weight ResNet generator (ngf=8) stands in for a trained model. The output is
compared with the model's output on the decoded input frames. That network's output is
pixel-level colour noise, which 4:2:0 chroma subsampling alone takes to about 19 dB in RGB,
so the comparison is on luma (PSNR-Y, the usual video measure).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from imgfactory import photo_like

from img2img.checkpoint import meta_for, save_generator
from img2img.cli import translate_main
from img2img.data.io import read_image, write_image
from img2img.data.paths import is_temp_name
from img2img.data.video_probe import VideoError, load_av, probe_video
from img2img.inference import readers, writers
from img2img.inference import video as video_mod
from img2img.inference.folder import plan, translate_jobs
from img2img.inference.translator import Translator
from img2img.inference.video import frame_name, upright
from img2img.nn import build_generator

av = pytest.importorskip("av")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH, KWARGS = "resnet_6blocks", {"ngf": 8}
W, H, FPS, N = 48, 32, 12, 24
RATE = 8000  # audio samples per second


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    g = build_generator(ARCH, **KWARGS).eval()
    path = tmp_path_factory.mktemp("ckpt") / "G_A2B.safetensors"
    save_generator(path, g, meta_for(g, ARCH, KWARGS, "cyclegan", "A2B"))
    return path


@pytest.fixture(scope="module")
def sr_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    kwargs = {"scale": 2, "channels": 8, "n_blocks": 1}
    g = build_generator("srresnet", **kwargs).eval()
    path = tmp_path_factory.mktemp("ckpt") / "G_sr.safetensors"
    save_generator(path, g, meta_for(g, "srresnet", kwargs, "srgan", "A2B"))
    return path


@pytest.fixture(scope="module")
def translator(checkpoint: Path) -> Translator:
    return Translator.from_checkpoint(checkpoint, device="cpu")


def make_clip(path: Path, width: int = W, height: int = H, frames: int = N,
              codec: str = "libx264", pix_fmt: str = "yuv420p", audio: str | None = "aac",
              rotation: int | None = None, sar: Fraction | None = None,
              vfr: bool = False) -> Path:
    """A clip whose frames all differ (a moving square on a textured background), with
    ``frames / FPS`` seconds of a 440 Hz tone; ``vfr``: frames 20 or 40 ms late, one in
    three on time (a variable frame rate)."""
    fmt = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(codec, rate=FPS, options={"qp": "0"} if codec == "libx264" else {})
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        if sar is not None:
            vs.codec_context.sample_aspect_ratio = sar
        if rotation is not None:
            vs.set_display_rotation(rotation)
        if vfr:
            vs.codec_context.time_base = Fraction(1, 1000)
        if audio is not None:
            aus = out.add_stream(audio, rate=RATE)
            aus.layout = "mono"
        base = photo_like(height, width, seed=3)
        for i in range(frames):
            img = base.copy()
            x, y = (3 * i) % (width - 8), (2 * i) % (height - 8)
            img[y : y + 8, x : x + 8] = (250, (40 + 8 * i) % 256, 30)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if vfr:
                frame.pts, frame.time_base = i * 1000 // FPS + (i % 3) * 20, Fraction(1, 1000)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if audio is not None:
            n = frames * RATE // FPS
            tone = np.sin(2 * np.pi * 440 * np.arange(n) / RATE) * 0.3
            samples = (tone.astype(np.float32) if audio == "aac"
                       else (tone * 20000).astype(np.int16))
            sample_fmt = "fltp" if audio == "aac" else "s16"
            for start in range(0, n, 1024):
                f = av.AudioFrame.from_ndarray(samples[None, start : start + 1024],
                                               format=sample_fmt, layout="mono")
                f.sample_rate, f.pts = RATE, start
                out.mux(aus.encode(f))
            out.mux(aus.encode(None))
    return path


def frame_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


def decoded(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[tuple[bytes, int, int]]:
    with av.open(str(path)) as c:
        return [(bytes(p), p.pts, p.duration) for p in c.demux(c.streams.audio[0])
                if p.dts is not None]


def audio_seconds(path: Path) -> Fraction:
    with av.open(str(path)) as c:
        tb = c.streams.audio[0].time_base
        packets = [p for p in c.demux(c.streams.audio[0]) if p.dts is not None]
    return (packets[-1].pts + packets[-1].duration - packets[0].pts) * tb


def psnr_y(a: np.ndarray, b: np.ndarray) -> float:
    weights = np.array([0.299, 0.587, 0.114])
    diff = a.astype(np.float64) @ weights - b.astype(np.float64) @ weights
    return float(10 * np.log10(255**2 / max(np.mean(diff**2), 1e-12)))


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = translate_main([str(a) for a in args] + ["--device", "cpu", "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temp_name(p.name)]


# --------------------------------------------------------------------------- round trip


def test_video_round_trip_keeps_frames_rate_and_audio_and_matches_per_frame_translation(
        tmp_path: Path, checkpoint: Path, translator: Translator,
        capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "clip.mp4")
    code, out, err = run(capsys, "--checkpoint", checkpoint, "--input", src,
                         "--output", tmp_path / "out", "--batch-size", "4")
    assert code == 0, err
    assert "1 translated" in out
    dst = tmp_path / "out" / "clip.mp4"
    info, before = probe_video(dst), probe_video(src)
    assert (info.width, info.height, info.fps, info.codec) == (W, H, before.fps, "h264")
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert c.streams.audio[0].codec_context.name == "aac"
    frames, ref = decoded(dst), translator.translate_arrays(decoded(src))
    assert len(frames) == N
    scores = [psnr_y(r, f) for r, f in zip(ref, frames, strict=True)]
    assert min(scores) > 35, scores
    # each frame is its own input's translation, not a neighbour's
    assert all(psnr_y(ref[i + 1], frames[i]) < scores[i] - 5 for i in range(N - 1))
    assert frame_times(dst) == frame_times(src)
    assert audio_packets(dst) == audio_packets(src)  # copied, not re-encoded
    assert audio_seconds(dst) == audio_seconds(src)
    assert abs(audio_seconds(src) - Fraction(N, FPS)) < 0.2  # AAC adds priming and padding
    assert not temps(tmp_path / "out")


def test_rotation_pixel_aspect_and_pcm_audio_in_matroska_are_kept(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "phone.mkv", audio="pcm_s16le", rotation=90,
                    sar=Fraction(4, 3))
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--input", src,
                       "--output", tmp_path / "out")
    assert code == 0, err
    before, after = probe_video(src), probe_video(tmp_path / "out" / "phone.mkv")
    assert before.rotation == 90 and before.display_matrix is not None
    assert after.display_matrix == before.display_matrix and after.rotation == 90
    assert after.sample_aspect_ratio == Fraction(4, 3)
    assert (after.width, after.height) == (W, H)  # translated as stored, not turned
    assert audio_packets(tmp_path / "out" / "phone.mkv") == audio_packets(src)
    assert len(decoded(tmp_path / "out" / "phone.mkv")) == N


def test_variable_frame_rate_timestamps_are_kept(tmp_path: Path, checkpoint: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "vfr.mkv", audio=None, vfr=True)
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--input", src,
                       "--output", tmp_path / "out")
    assert code == 0, err
    times = frame_times(src)
    assert len(set(np.diff(times))) > 1  # really variable
    assert frame_times(tmp_path / "out" / "vfr.mkv") == times


def test_sr_video_is_scale_times_larger(tmp_path: Path, sr_checkpoint: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "clip.mov", audio=None)
    code, _, err = run(capsys, "--checkpoint", sr_checkpoint, "--input", src,
                       "--output", tmp_path / "out")
    assert code == 0, err
    sr = Translator.from_checkpoint(sr_checkpoint, device="cpu")
    frames, ref = decoded(tmp_path / "out" / "clip.mov"), sr.translate_arrays(decoded(src))
    assert len(frames) == N and frames[0].shape == (2 * H, 2 * W, 3)
    assert min(psnr_y(r, f) for r, f in zip(ref, frames, strict=True)) > 35


def test_odd_frame_size_gets_one_copied_row_and_column_for_yuv420p(
        tmp_path: Path, checkpoint: Path, translator: Translator,
        capsys: pytest.CaptureFixture[str]) -> None:
    # FFV1 in 4:4:4 stores odd sizes; H.264 in 4:2:0 needs even ones
    src = make_clip(tmp_path / "in" / "odd.mkv", width=47, height=33, frames=6, codec="ffv1",
                    pix_fmt="yuv444p", audio=None)
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--input", src,
                       "--output", tmp_path / "out")
    assert code == 0, err
    frames = decoded(tmp_path / "out" / "odd.mkv")
    ref = translator.translate_arrays(decoded(src))
    assert len(frames) == 6 and frames[0].shape == (34, 48, 3)
    assert min(psnr_y(r, f[:33, :47]) for r, f in zip(ref, frames, strict=True)) > 35
    # the extra column and row repeat the last ones
    assert psnr_y(frames[0][:33, 47:48], frames[0][:33, 46:47]) > 30
    assert psnr_y(frames[0][33:34, :47], frames[0][32:33, :47]) > 30


# --------------------------------------------------------------------------- folders, reruns


def test_folder_with_images_a_video_and_a_corrupt_video(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "in"
    write_image(root / "a.png", photo_like(32, 48, seed=1))
    write_image(root / "sub" / "b.jpg", photo_like(40, 24, seed=2))
    make_clip(root / "sub" / "clip.mp4")
    (root / "bad.mp4").write_bytes(os.urandom(4000))
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "--checkpoint", checkpoint, "--input", root,
                            "--output", out)
    assert code == 1
    assert f"failed: {root / 'bad.mp4'}: cannot open as a video" in err
    assert "3 translated, 0 skipped (output exists), 1 failed" in stdout
    assert read_image(out / "a.png").shape == (32, 48, 3)
    assert read_image(out / "sub" / "b.jpg").shape == (40, 24, 3)
    assert len(decoded(out / "sub" / "clip.mp4")) == N
    assert not (out / "bad.mp4").exists() and not temps(out)
    stamp = (out / "sub" / "clip.mp4").stat().st_mtime_ns
    code, stdout, _ = run(capsys, "--checkpoint", checkpoint, "--input", root, "--output", out)
    assert code == 1 and "0 translated, 3 skipped (output exists), 1 failed" in stdout
    assert (out / "sub" / "clip.mp4").stat().st_mtime_ns == stamp


def test_ext_is_for_images_a_video_keeps_its_name_and_container(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "in"
    write_image(root / "a.jpg", photo_like(16, 24, seed=1))
    make_clip(root / "clip.mkv", frames=3, audio=None)
    code, stdout, err = run(capsys, "--checkpoint", checkpoint, "--input", root,
                            "--output", tmp_path / "out", "--ext", "png")
    assert code == 0, err
    assert "2 translated" in stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "clip.mkv"]
    assert len(decoded(tmp_path / "out" / "clip.mkv")) == 3


def test_frames_out_writes_numbered_upright_pngs_and_a_rerun_fills_gaps(
        tmp_path: Path, checkpoint: Path, translator: Translator,
        capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "phone.mp4", rotation=90)
    frames_dir = tmp_path / "frames"
    args = ("--checkpoint", checkpoint, "--input", src, "--output", tmp_path / "out",
            "--frames-out", frames_dir, "--batch-size", "4")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    pngs = sorted(p.name for p in (frames_dir / "phone").iterdir())
    assert pngs == [f"{i:06d}.png" for i in range(1, N + 1)]
    assert not (tmp_path / "out" / "phone.mp4").exists()  # frames instead of a video
    frames = decoded(src)
    # in batches of 4 as the run did: another batch size may round a few pixels differently
    ref = [out for i in range(0, N, 4) for out in translator.translate_arrays(frames[i : i + 4])]
    for i in (0, 13, N - 1):
        png = read_image(frames_dir / "phone" / frame_name(i))
        assert png.shape == (W, H, 3)  # turned upright: 90 degrees counter-clockwise
        assert np.array_equal(png, np.rot90(ref[i]))  # PNG is lossless: exact
    (frames_dir / "phone" / "000007.png").unlink()
    stamp = (frames_dir / "phone" / "000001.png").stat().st_mtime_ns
    code, out, _ = run(capsys, *args)
    assert code == 0 and "1 translated" in out
    redone = read_image(frames_dir / "phone" / "000007.png")
    assert np.array_equal(redone, np.rot90(translator(frames[6])))  # alone, as redone
    assert (frames_dir / "phone" / "000001.png").stat().st_mtime_ns == stamp
    code, out, _ = run(capsys, *args)
    assert code == 0 and "0 translated, 1 skipped" in out


@pytest.mark.parametrize(("degrees", "turns"), [(90, 1), (180, 2), (270, 3), (0, 0)])
def test_upright_turns_as_the_stored_rotation_says(tmp_path: Path, degrees: int,
                                                   turns: int) -> None:
    path = tmp_path / "r.mp4"
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("mpeg4", rate=1)
        vs.width, vs.height, vs.pix_fmt = 16, 16, "yuv420p"
        vs.set_display_rotation(degrees)  # counter-clockwise, as VideoFrame.rotation reads it
        c.mux(vs.encode(av.VideoFrame(16, 16, "yuv420p")))
        c.mux(vs.encode(None))
    img = np.arange(6).reshape(2, 3)
    assert np.array_equal(upright(img, probe_video(path).display_matrix), np.rot90(img, turns))
    assert np.array_equal(upright(img, None), img)


_KILLER = """
import os, signal, sys
from img2img.cli import translate_main
from img2img.inference.translator import Translator

calls = []
real = Translator.translate_arrays


def dying(self, images):
    calls.append(len(images))
    if len(calls) == 3:  # after two batches were encoded
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, images)


Translator.translate_arrays = dying
sys.exit(translate_main(sys.argv[1:]))
"""


def test_killed_run_leaves_no_video_and_a_rerun_completes_it(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "clip.mp4")
    out = tmp_path / "out"
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    args = ["--checkpoint", checkpoint, "--input", src, "--output", out, "--batch-size", "4",
            "--device", "cpu", "--quiet"]
    worktree = Path(video_mod.__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(worktree)}
    proc = subprocess.run([sys.executable, str(script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (out / "clip.mp4").exists()  # no playable-looking half file
    assert len(temps(out)) == 1  # the unfinished video, under its temp name
    code, stdout, err = run(capsys, *args[:8])
    assert code == 0, err
    assert "1 translated" in stdout and "removed 1 leftover temp file" in stdout
    assert len(decoded(out / "clip.mp4")) == N and not temps(out)


def test_failure_mid_video_is_reported_and_leaves_nothing(
        tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "clip.mp4")
    calls: list[int] = []
    real = Translator.translate_arrays

    def failing(self: Translator, images: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(images))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return real(self, images)

    monkeypatch.setattr(Translator, "translate_arrays", failing)
    code, out, err = run(capsys, "--checkpoint", checkpoint, "--input", src,
                         "--output", tmp_path / "out")
    assert code == 1
    assert f"failed: {src}: translation failed: out of memory" in err
    assert not (tmp_path / "out" / "clip.mp4").exists() and not temps(tmp_path / "out")


def test_frames_stream_through_in_batches(tmp_path: Path, translator: Translator,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A clip is never held in memory: the video reader and writer are table entries of
    the folder run, and the first batch is translated (and encoded) after only its own
    frames were decoded."""
    assert isinstance(readers.reader_for(Path("a.MP4")), video_mod.VideoReader)
    assert isinstance(writers.WRITERS["video"], video_mod.VideoWriter)
    src = make_clip(tmp_path / "in" / "clip.mp4")
    decoded_so_far: list[int] = []
    seen: list[tuple[int, int]] = []
    real_read, real_translate = video_mod.read_frames, Translator.translate_arrays

    def counting_read(container: object):  # noqa: ANN202
        for item in real_read(container):
            decoded_so_far.append(item.index)
            yield item

    def watching(self: Translator, images: list[np.ndarray]) -> list[np.ndarray]:
        seen.append((len(decoded_so_far), len(images)))
        return real_translate(self, images)

    monkeypatch.setattr(video_mod, "read_frames", counting_read)
    monkeypatch.setattr(Translator, "translate_arrays", watching)
    report = translate_jobs(translator, plan(str(src), tmp_path / "out").jobs, batch_size=5)
    assert report.done == [tmp_path / "out" / "clip.mp4"] and not report.failed
    assert len(decoded(tmp_path / "out" / "clip.mp4")) == N
    assert [size for _, size in seen] == [5, 5, 5, 5, 4]
    assert [count for count, _ in seen] == [5, 10, 15, 20, 24], "one batch decoded at a time"


def test_progress_bar_counts_the_frames_of_each_video(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "clip.mp4", frames=6, audio=None)
    capsys.readouterr()
    code = translate_main(["--checkpoint", str(checkpoint), "--input", str(src),
                           "--output", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "clip.mp4: " in err and "/6 [" in err and "frame/s" in err  # a bar of 6 frames
    code = translate_main(["--checkpoint", str(checkpoint), "--input", str(src), "--output",
                           str(tmp_path / "again"), "--device", "cpu", "--quiet"])
    assert code == 0 and "frame/s" not in capsys.readouterr().err


# --------------------------------------------------------------------------- flags


def test_codec_and_crf_flags(tmp_path: Path, checkpoint: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "clip.mp4", frames=4, audio=None)
    base = ("--checkpoint", checkpoint, "--input", src, "--output", tmp_path / "out")
    code, _, err = run(capsys, *base, "--codec", "no-such-codec")
    assert code == 2 and "--codec no-such-codec" in err and "libx264" in err
    code, _, err = run(capsys, *base, "--crf", "60")
    assert code == 2 and "--crf 60: libx264 takes 0 to 51" in err
    code, _, err = run(capsys, *base, "--codec", "mpeg4", "--crf", "20")
    assert code == 2 and "mpeg4 has no constant-quality" in err
    assert not (tmp_path / "out").exists()
    code, _, err = run(capsys, *base, "--codec", "mpeg4")
    assert code == 0, err
    assert probe_video(tmp_path / "out" / "clip.mp4").codec == "mpeg4"
    code, _, err = run(capsys, *base, "--crf", "30", "--overwrite")
    assert code == 0, err
    assert probe_video(tmp_path / "out" / "clip.mp4").codec == "h264"


def test_a_codec_the_container_cannot_hold_is_one_failure_line_and_no_file(
        tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "in" / "clip.webm", frames=2, codec="libvpx-vp9", audio=None)
    out = tmp_path / "out"
    code, _, err = run(capsys, "--checkpoint", checkpoint, "--input", src, "--output", out,
                       "--codec", "libx264")
    assert code == 1
    assert (f"failed: {src}: cannot write {out / 'clip.webm'}: 'webm' format does not "
            f"support 'libx264' codec") in err
    assert not (out / "clip.webm").exists() and not temps(out)


def test_without_pyav_a_video_is_one_failure_line_and_images_still_run(
        tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "in"
    write_image(root / "a.png", photo_like(32, 48, seed=1))
    make_clip(root / "clip.mp4", frames=2, audio=None)
    monkeypatch.setitem(sys.modules, "av", None)  # import av -> ImportError
    with pytest.raises(VideoError, match=r"pip install 'img2img\[video\]'"):
        load_av()
    code, out, err = run(capsys, "--checkpoint", checkpoint, "--input", root,
                         "--output", tmp_path / "out")
    assert code == 1
    assert f"failed: {root / 'clip.mp4'}: videos need PyAV: pip install 'img2img[video]'" in err
    assert "1 translated" in out and (tmp_path / "out" / "a.png").exists()
