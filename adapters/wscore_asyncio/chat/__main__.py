"""`python -m wscore_asyncio.chat [--host H] [--port P]`: the chat demo, as `wscore chat` runs it."""

from __future__ import annotations

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
