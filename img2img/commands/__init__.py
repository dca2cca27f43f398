"""The subcommands of ``img2img``: one module each, and the table ``img2img --help`` lists.

A command is one row of :data:`COMMANDS` (name -> one-line summary, entry). An entry is
imported only when its command runs. A new command that is a module with
``add_arguments(parser)`` and ``run(ns) -> int`` is one line, e.g. the local web page::

    "app": Command("a local web page to translate images (the 'app' extra)",
                   module_command("img2img.webapp", "img2img app", "...", extra="app")),
"""

from __future__ import annotations

from img2img.commands.table import Command, lazy, module_command

__all__ = ["COMMANDS", "DESCRIPTION"]

DESCRIPTION = ("img2img: image-to-image translation (CycleGAN, CUT, pix2pix, SRGAN) on CPU "
               "or GPU.")

COMMANDS: dict[str, Command] = {
    "train": Command("train a model (cyclegan, cut, fastcut, pix2pix, srgan) on a dataset "
                     "folder", lazy("img2img.commands.train:train_main")),
    "translate": Command("run a generator over a file, a folder tree or a glob (any size)",
                         lazy("img2img.commands.translate:translate_main")),
    "evaluate": Command("PSNR/SSIM of outputs against references, or FID/KID of two image "
                        "sets", lazy("img2img.commands.evaluate:evaluate_main")),
    "data": Command("dataset tools: make-unpaired, make-paired, combine, split, make-sr-pairs, "
                    "download", lazy("img2img.commands.data:data_main")),
    "benchmark": Command("measure training and translation speed on this machine (table + "
                         "JSON)", lazy("img2img.commands.benchmark:benchmark_main")),
    "import": Command("convert a published checkpoint (.pth) into a self-describing "
                      ".safetensors", lazy("img2img.commands.import_:import_main")),
    "export": Command("export a generator to ONNX, checked against PyTorch with ONNX Runtime",
                      lazy("img2img.commands.export:export_main")),
    "models": Command("list well-known published generators, or fetch one (download, import, "
                      "verify)", lazy("img2img.commands.models:models_main")),
    "report": Command("write a training run's report.html (loss curves, samples, settings)",
                      lazy("img2img.commands.report:report_main")),
    "app": Command("a local web page to try models on your images (the 'app' extra)",
                   module_command("img2img.webapp", "img2img app",
                                  "Start a local web page (Gradio) to translate uploaded images "
                                  "with one or more checkpoints.", extra="app")),
}
