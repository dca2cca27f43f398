"""``img2img app``: a local web page (Gradio) that translates uploaded images.

``add_arguments`` / ``run`` / ``main`` are the command (importing this package imports
neither torch nor Gradio); :func:`img2img.webapp.page.build_app` builds the page for
:func:`img2img.webapp.models.load_entries`'s models (tests and scripts use them directly).
"""

from img2img.webapp.command import add_arguments, main, run

__all__ = ["add_arguments", "build_app", "main", "run"]


def build_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - see page.build_app
    """:func:`img2img.webapp.page.build_app` (imports Gradio on first use)."""
    from img2img.webapp.page import build_app as build

    return build(*args, **kwargs)
