"""The chat demo: `server.py` (run it, or `wscore chat`) and the browser page `index.html`."""
