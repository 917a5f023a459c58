"""The shared adapter kit: everything `wscore_asyncio`, `wscore_trio` and `wscore_anyio` have in common,
written once.

Layers (a test enforces the import rules):

- `wscore` is the sans-I/O protocol core: standard library and `h11` only, no `async`;
- this kit imports `wscore` and no I/O library (asyncio, trio, anyio, socket, ssl, selectors) at
  module level: `api` (options, argument checks, the typed-receive half of the connection API),
  `server` (the server path: request, `process_request`, HEAD, handler outcome → close code),
  `driver` (the connection, pump, client and server paths over an `IOBackend` of primitives);
- each adapter supplies the primitives of its I/O library and imports the kit and `wscore`'s public
  names, never another adapter's private names.

Private to this distribution: applications import an adapter, which re-exports what they need.
"""
