"""The chat demo: `server.py` (`wscore chat`, `python -m wscore_asyncio.chat`) and its page `index.html`."""
