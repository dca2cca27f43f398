"""``python -m img2img.webapp --checkpoint ...`` (the same as ``img2img app``)."""

import sys

from img2img.webapp.command import main

sys.exit(main())
