"""img2img: image-to-image translation (CycleGAN, pix2pix, SRGAN).

Importing the package is cheap: submodules are imported where they are used.
"""

__version__ = "0.1.0"
