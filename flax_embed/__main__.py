import sys

from flax_embed.cli import main

sys.exit(main())
