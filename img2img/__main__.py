"""``python -m img2img <command>``: the same as the ``img2img`` console script."""

import sys

from img2img.cli import main

if __name__ == "__main__":
    sys.exit(main())
