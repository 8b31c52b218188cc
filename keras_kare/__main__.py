"""``python -m keras_kare ...`` is the ``keras-kare`` command."""

import sys

from keras_kare.cli import main

sys.exit(main())
