"""Generators shipped inside the package (package data), found by name.

``img2img translate --checkpoint sr_x4_naip`` runs ``sr_x4_naip.safetensors`` from this
folder (:mod:`img2img.inference.bundled`); README.md here says how each was trained and how
well it does.
"""
