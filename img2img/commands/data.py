"""``img2img data <command>``: the dataset tools (also ``datasets/*.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from img2img.commands.table import Command, dispatch, lazy

DESCRIPTION = "Dataset tools: build, combine, split and download training data."

DATA_COMMANDS: dict[str, Command] = {
    "make-unpaired": Command("build ROOT/trainA trainB testA testB from folders, globs, lists "
                             "or a label CSV",
                             lazy("img2img.commands.data_make_unpaired:make_unpaired_main")),
    "make-paired": Command("build a paired dataset from photos (A = edges, gray, blur or "
                           "downscaled)", lazy("img2img.commands.data_make_paired:"
                                               "make_paired_main")),
    "combine": Command("join two folders into A|B side-by-side images, or --split them back",
                       lazy("img2img.commands.data_combine:combine_main")),
    "split": Command("split a folder (or aligned A/B folders) into train/val/test by "
                     "fractions", lazy("img2img.commands.data_split:split_main")),
    "make-sr-pairs": Command("make ROOT/HR + ROOT/LR_xS super-resolution pairs (MATLAB "
                             "bicubic)", lazy("img2img.commands.data_make_sr_pairs:"
                                              "make_sr_pairs_main")),
    "download": Command("download a public CycleGAN or pix2pix dataset (--list shows them)",
                        lazy("img2img.commands.data_download:download_main")),
}


def data_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``img2img data``: the listing, or one of :data:`DATA_COMMANDS`."""
    return dispatch("img2img data", DATA_COMMANDS, argv, DESCRIPTION)
